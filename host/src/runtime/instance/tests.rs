//! One store holding several instances, at the runtime level.

use super::*;
use crate::runtime::Runtime;

/// Bars whose closes make fast-window crosses that differ by window.
fn bars() -> Vec<Bar> {
    let symbol: Arc<str> = Arc::from("X");
    (0..400_i64)
        .map(|i| {
            let close = Decimal::from(100 + (i * 7 % 23) - (i / 40) * 3);
            Bar { symbol: symbol.clone(), time: i, open: close, high: close, low: close, close, volume: 1.into() }
        })
        .collect()
}

fn params(fast: i64, slow: i64) -> Vec<wit::Param> {
    let int = |key: &str, value| wit::Param { key: key.into(), value: wit::ParamValue::Integer(value) };
    let qty = wit::ParamValue::Decimal(wit::Decimal { mantissa: 1, scale: 0 });
    vec![int("fast", fast), int("slow", slow), wit::Param { key: "qty".into(), value: qty }]
}

/// The bars each action of one `on-bars` call was tagged with.
fn tags(component: &mut Component, instance: ResourceAny, columns: &wit::Bars) -> Vec<u32> {
    let guest = guest(&component.bindings);
    let actions = guest.call_on_bars(&mut component.store, instance, columns).unwrap();
    actions.iter().map(|a| a.bar).collect()
}

/// One store, two instances with their own parameters: each acts as it
/// would alone, so the guest keeps no state outside its instances.
#[test]
fn a_store_holds_several_instances_that_do_not_share_state() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let plugin = runtime.load_named("sma-crossover").unwrap();
    let policy = Policy::new(runtime.config(), &Budget::default());
    let mut columns = Columns::default();
    let columns = columns.fill(&bars()).unwrap().clone();
    let new_component = || Component::new(&plugin.pre, HostState::new("t".into(), Clock::virtual_at(0)), &policy, None);

    let mut alone = Vec::new();
    for (fast, slow) in [(2, 5), (3, 12)] {
        let mut component = new_component().unwrap();
        let guest = guest(&component.bindings);
        let instance = guest.call_create(&mut component.store, &params(fast, slow)).unwrap().unwrap();
        alone.push(tags(&mut component, instance, &columns));
    }
    assert_ne!(alone[0], alone[1], "the two parameter sets trade differently");
    assert!(!alone[0].is_empty());

    let mut shared = new_component().unwrap();
    let guest = guest(&shared.bindings);
    let a = guest.call_create(&mut shared.store, &params(2, 5)).unwrap().unwrap();
    let b = guest.call_create(&mut shared.store, &params(3, 12)).unwrap().unwrap();
    // Interleaved, half a batch at a time.
    let half = |from: usize, to: usize| {
        let mut c = Columns::default();
        c.fill(&bars()[from..to]).unwrap().clone()
    };
    let (first, second) = (half(0, 200), half(200, 400));
    let mut seen = [tags(&mut shared, a, &first), tags(&mut shared, b, &first)];
    let later = [tags(&mut shared, a, &second), tags(&mut shared, b, &second)];
    for (tags, later) in seen.iter_mut().zip(later) {
        tags.extend(later.into_iter().map(|t| t + 200));
    }
    assert_eq!(seen.to_vec(), alone);
    a.resource_drop(&mut shared.store).unwrap();
    b.resource_drop(&mut shared.store).unwrap();
}

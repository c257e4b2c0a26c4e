//! A plugin that misbehaves on request, for the host's sandbox tests.
//!
//! Parameter `mode` picks the behaviour on a bar whose time equals `at`
//! (every bar when `at` is absent):
//! - `ok`: nothing, but `notify` once per batch with the bars seen so far;
//! - `loop`: spin forever;
//! - `trap`: panic;
//! - `oom`: allocate until memory runs out;
//! - `spam`: write `spam` bytes to stdout and stderr;
//! - `probe`: report what the sandbox lets it see (files, env, clock);
//! - `buy`: submit a market buy of `qty` of `symbol` (default: the bar's);
//! - `churn`: on every bar, buy `qty` if it has seen an odd number of bars,
//!   else sell `qty`, so it holds 0 or `qty` when every order fills.
//!
//! In every mode it notifies `filled N` for each fill of its intent N. Its
//! saved state is five little-endian `u64`s, for the host's crash tests:
//! bars seen, time of the last bar, bars that came out of order or twice,
//! fills heard of, and signals heard of.

use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

use exports::stratbox::strategy::strategy::Guest;
use stratbox::strategy::host;
use stratbox::strategy::types::{
    Action, Bar, BarAction, Decimal, Fill, Info, Level, Notification, OrderIntent, OrderType, Param, ParamKind,
    ParamSpec, Rejection, Side, Signal, TimeInForce,
};

#[derive(Default)]
struct Config {
    mode: String,
    at: Option<i64>,
    symbol: Option<String>,
    qty: i64,
    spam: usize,
    seen: u64,
    last_time: i64,
    disorder: u64,
    fills: u64,
    signals: u64,
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

struct Component;

fn notify(message: String) -> Action {
    Action::Notify(Notification { level: Level::Info, message })
}

fn spec(key: &str, kind: ParamKind, default: &str) -> ParamSpec {
    ParamSpec { key: key.into(), kind, default: default.into(), description: String::new() }
}

fn probe() -> String {
    let root = std::fs::read_dir("/").map(|d| d.count()).map_err(|e| e.kind());
    let env = std::env::vars().count();
    let args = std::env::args().count();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("fs={root:?} env={env} args={args} wall_ms={now} host_now={}", host::now())
}

impl Guest for Component {
    fn describe() -> Info {
        Info {
            name: "misbehave".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "misbehaves on request, for tests".into(),
            params: vec![
                spec("mode", ParamKind::Text, "ok"),
                spec("at", ParamKind::Integer, ""),
                spec("symbol", ParamKind::Text, ""),
                spec("qty", ParamKind::Integer, "1"),
                spec("spam", ParamKind::Integer, "1048576"),
            ],
        }
    }

    fn init(params: Vec<Param>) -> Result<(), String> {
        let mut config = Config { mode: "ok".into(), qty: 1, spam: 1 << 20, ..Config::default() };
        for Param { key, value } in params {
            let int = || value.parse::<i64>().map_err(|_| format!("{key}: not an integer"));
            match key.as_str() {
                "mode" => config.mode = value.clone(),
                "at" => config.at = Some(int()?),
                "symbol" => config.symbol = Some(value.clone()),
                "qty" => config.qty = int()?,
                "spam" => config.spam = int()? as usize,
                other => return Err(format!("unknown parameter `{other}`")),
            }
        }
        if config.mode == "trap-init" {
            panic!("asked to trap in init");
        }
        CONFIG.with_borrow_mut(|c| *c = config);
        Ok(())
    }

    fn on_bars(bars: Vec<Bar>) -> Vec<BarAction> {
        CONFIG.with_borrow_mut(|config| {
            let mut out = Vec::new();
            for (index, bar) in bars.iter().enumerate() {
                config.seen += 1;
                if config.seen > 1 && bar.time <= config.last_time {
                    config.disorder += 1;
                }
                config.last_time = config.last_time.max(bar.time);
                if config.at.is_some_and(|at| at != bar.time) {
                    continue;
                }
                let action = match config.mode.as_str() {
                    "loop" =>
                    {
                        #[allow(clippy::empty_loop)]
                        loop {}
                    }
                    "trap" => panic!("asked to trap at {}", bar.time),
                    "oom" => {
                        let mut hog: Vec<Vec<u8>> = Vec::new();
                        loop {
                            hog.push(vec![1; 1 << 20]);
                        }
                    }
                    "spam" => {
                        let line = "x".repeat(99);
                        for _ in 0..config.spam / 100 {
                            println!("{line}");
                            eprintln!("{line}");
                        }
                        continue;
                    }
                    "probe" => notify(probe()),
                    "buy" => Action::Submit(OrderIntent {
                        symbol: config.symbol.clone().unwrap_or_else(|| bar.symbol.clone()),
                        side: Side::Buy,
                        qty: Decimal { mantissa: config.qty, scale: 0 },
                        order_type: OrderType::Market,
                        time_in_force: TimeInForce::Gtc,
                    }),
                    "churn" => Action::Submit(OrderIntent {
                        symbol: config.symbol.clone().unwrap_or_else(|| bar.symbol.clone()),
                        side: if config.seen % 2 == 1 { Side::Buy } else { Side::Sell },
                        qty: Decimal { mantissa: config.qty, scale: 0 },
                        order_type: OrderType::Market,
                        time_in_force: TimeInForce::Day,
                    }),
                    _ => continue,
                };
                out.push(BarAction { bar: index as u32, action });
            }
            if config.mode == "ok" {
                out.push(BarAction {
                    bar: bars.len().saturating_sub(1) as u32,
                    action: notify(format!("seen {}", config.seen)),
                });
            }
            out
        })
    }

    fn on_fill(fill: Fill) -> Vec<Action> {
        CONFIG.with_borrow_mut(|c| c.fills += 1);
        vec![notify(format!("filled {}", fill.intent))]
    }

    fn on_reject(rejection: Rejection) -> Vec<Action> {
        vec![notify(format!("rejected {}: {}", rejection.intent, rejection.reason))]
    }

    fn on_signal(signal: Signal) -> Vec<Action> {
        CONFIG.with_borrow_mut(|c| c.signals += 1);
        vec![notify(format!("signal {}: {}", signal.source, signal.payload))]
    }

    fn save_state() -> Vec<u8> {
        CONFIG.with_borrow(|c| {
            [c.seen, c.last_time as u64, c.disorder, c.fills, c.signals].iter().flat_map(|n| n.to_le_bytes()).collect()
        })
    }

    fn load_state(state: Vec<u8>) -> Result<(), String> {
        // Eight bytes (bars seen only) and 32 are older forms.
        if ![8, 32, 40].contains(&state.len()) {
            return Err("state must be 8, 32 or 40 bytes".into());
        }
        let word =
            |i: usize| state.get(i * 8..i * 8 + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        CONFIG.with_borrow_mut(|c| {
            c.seen = word(0);
            c.last_time = word(1) as i64;
            c.disorder = word(2);
            c.fills = word(3);
            c.signals = word(4);
        });
        Ok(())
    }
}

export!(Component);

//! Hostile strategies beside a calm one, each in a host of its own: the
//! cases `tests/isolation.rs` asserts on and `benches/sandbox.rs` measures.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::MISBEHAVE_WASM;
use crate::process::{HostProcess, health, listening_address, memory_of, strategy, write_host_config};

/// Bars in the replay (bundled AAPL).
pub const BARS: u64 = 3270;

/// One hostile strategy: the `misbehave` plugin in one of its modes.
#[derive(Debug, Clone, Copy)]
pub struct Hostile {
    pub name: &'static str,
    /// Its parameters, a TOML inline table.
    pub params: &'static str,
    /// Its own limits, a TOML inline table.
    pub limits: &'static str,
    /// The breach `/health` must count; `None` for one the sandbox makes
    /// harmless without a breach, which must then see every bar.
    pub breach: Option<&'static str>,
}

const fn case(name: &'static str, params: &'static str, limits: &'static str, breach: &'static str) -> Hostile {
    Hostile { name, params, limits, breach: Some(breach) }
}

pub const CASES: &[Hostile] = &[
    case("loop", "{ mode = \"loop\" }", "{}", "deadline"),
    case("wait", "{ mode = \"wait\" }", "{}", "deadline"),
    Hostile { name: "sleep", params: "{ mode = \"sleep\" }", limits: "{}", breach: None },
    case("trap", "{ mode = \"trap\" }", "{}", "trap"),
    case("exit", "{ mode = \"exit\" }", "{}", "trap"),
    case("recurse", "{ mode = \"recurse\" }", "{}", "trap"),
    case("oom", "{ mode = \"oom\" }", "{}", "memory"),
    case("alias", "{ mode = \"alias\" }", "{}", "output"),
    case("leak", "{ mode = \"leak\" }", "{}", "handles"),
    case("many", "{ mode = \"many\" }", "{}", "actions"),
    case("loop-fill", "{ mode = \"loop-fill\" }", "{}", "deadline"),
    case("long-symbol", "{ mode = \"long-symbol\" }", "{}", "contract"),
    case("spam", "{ mode = \"spam\", spam = 100000 }", "{}", "log"),
    case("flood", "{ mode = \"flood\" }", "{}", "log"),
    case("slow", "{ mode = \"slow\", work = 30000000 }", "{ cpu_ms_per_minute = 300 }", "cpu"),
    case("buy", "{ mode = \"buy\" }", "{ orders_per_minute = 5 }", "orders"),
    Hostile { name: "probe", params: "{ mode = \"probe\" }", limits: "{}", breach: None },
];

/// The case called `name`.
pub fn hostile(name: &str) -> Hostile {
    *CASES.iter().find(|c| c.name == name).expect("a known case")
}

/// A replay of AAPL to the SMA, named `calm`, and beside it `neighbour`
/// (the misbehaving plugin), if any.
pub fn beside_the_sma(neighbour: Option<Hostile>) -> String {
    let mut sections = "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace_ms = 1\n\n\
         [runtime]\nrestart_backoff_ms = 10\n\n\
         [[strategy]]\nname = \"calm\"\nplugin = \"sma-crossover\"\n\n"
        .to_string();
    if let Some(Hostile { name, params, limits, .. }) = neighbour {
        sections += &format!(
            "[[strategy]]\nname = {name:?}\nplugin = {MISBEHAVE_WASM:?}\nparams = {params}\nlimits = {limits}\n"
        );
    }
    sections
}

/// What a host beside a hostile neighbour came to.
pub struct Run {
    /// `/health` once the calm strategy had every bar and the neighbour
    /// had done what it does.
    pub health: serde_json::Value,
    /// The most the host was resident, in bytes.
    pub peak: u64,
    /// How it ended after SIGTERM, if it did within 30 s.
    pub exit: Option<ExitStatus>,
}

/// One host at a time: the claim is that a strategy keeps its pace beside
/// a hostile one in its own host, on a machine the test does not also fill
/// with other hosts (on 2 cores, two hosts of two busy strategies each
/// starve every thread, and the calm one rightly drops bars it had no time
/// for).
static ONE_HOST_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for this test's turn to run a host (see [`ONE_HOST_AT_A_TIME`]).
pub async fn host_turn() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_HOST_AT_A_TIME.lock().await
}

/// Runs the SMA beside `neighbour` (alone with `None`) until both are done,
/// then stops the host with SIGTERM.
pub async fn run_beside_the_sma(binary: &str, neighbour: Option<Hostile>) -> Run {
    let _turn = host_turn().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = write_host_config(dir.path(), &beside_the_sma(neighbour));
    let out = dir.path().join("out.txt");
    let file = std::fs::File::create(&out).expect("the output file");
    let mut host = HostProcess::spawn(binary, &config, Stdio::from(file));
    let addr = listening_address(&out).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("a client");
    let count = |s: &serde_json::Value, key: &str| s[key].as_u64().unwrap_or(0);
    let start = Instant::now();
    let health = loop {
        let h = health(&client, &addr).await;
        let calm_done = strategy(&h, "calm").is_some_and(|s| count(s, "bars") == BARS);
        let neighbour_done = neighbour.is_none_or(|n| {
            strategy(&h, n.name).is_some_and(|s| match n.breach {
                Some(kind) => count(&s["breaches"], kind) > 0,
                None => count(s, "bars") + count(s, "bars_dropped") == BARS,
            })
        });
        if calm_done && neighbour_done {
            break h;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{neighbour:?}: not done: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let peak = memory_of(host.id(), "VmHWM");
    host.signal("TERM");
    let exit = host.wait_for_exit(Duration::from_secs(30));
    Run { health, peak, exit }
}

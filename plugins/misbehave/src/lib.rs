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
//!   else sell `qty`, so it holds 0 or `qty` when every order fills;
//! - `stop`: submit a good-till-canceled buy stop of `qty` at `price`;
//! - `stop-then-trap`: the same at `at`, then panic on every later bar;
//! - `buy-then-trap`: `buy` at `at`, then, once a fill is heard of, panic
//!   on every later bar;
//! - `account`: `notify` what `host::account` and `host::position` say;
//! - `reuse`: submit a market buy of `qty`, always under order id 1;
//! - `sleep`: `std::thread::sleep` for an hour (a blocking WASI call);
//! - `wait`: spin until the monotonic clock has moved an hour;
//! - `long-symbol`: submit an order for a symbol of 1 MiB;
//! - `refuse-long`: refuse to start, with a 1 MiB message;
//! - `slow`: spend `work` loop iterations of CPU on every bar;
//! - `flood`: on each of its first 20 bars, `notify` 10,000 times 4 KiB;
//! - `trap-save`: panic in `save-state`;
//! - `random`: `notify` a bit drawn from WASI randomness on every bar, which
//!   a restored instance draws afresh: not deterministic;
//! - `recurse`: recurse without end;
//! - `exit`: call `std::process::exit(3)` (WASI reports any failure as 1);
//! - `big-state`: save 32 MiB of state;
//! - `loop-create`, `loop-restore`, `loop-fill`, `loop-reject`,
//!   `loop-signal`, `loop-save`: spin forever in that export (`loop-fill`
//!   and `loop-reject` place orders as `buy` does);
//! - `trap-restored`: nothing when created, but `trap` on every bar once
//!   restored from a state (a build that breaks on a swap);
//! - `many`: return one action more than the host allows (10,001);
//! - `leak`: open a million WASI timers and never close them;
//! - `alias`: return 10,000 notifications whose texts all point at one
//!   buffer of 1 MiB: 10 GB for a host that copied each.
//!
//! Builds of the same code can differ: tests patch the bytes after
//! `stratbox-build:` in the compiled plugin ([`BUILD`]). A build marked
//! `trap@N` panics on the N-th bar an instance of it sees after it was
//! created or restored, whatever the mode (a build that breaks soon after a
//! swap).
//!
//! Each order's id is the number of bars seen when it was placed, so ids are
//! unique and deterministic without more state. In every mode it notifies
//! `filled N` for each fill of its order N. Its
//! saved state is five little-endian `u64`s, for the host's crash tests:
//! bars seen, time of the last bar, bars that came out of order or twice,
//! fills heard of, and signals heard of.

use stratbox_sdk::{
    Action, BarAction, Bars, Decimal, Error, Fill, Info, Level, Order, OrderType, ParamValue, Params, Rejection, Side,
    Signal, Strategy, TimeInForce, export_strategy, host,
};

/// What this build is, patched by tests (same length) to make other builds.
static BUILD: [u8; 32] = *b"stratbox-build:ok_______________";

/// The bar (counted from creation or restore) this build traps on, if any.
fn build_traps_at() -> Option<u64> {
    // Read through an opaque reference: the bytes are patched after compiling.
    let build = std::hint::black_box(&BUILD);
    let mark = std::str::from_utf8(&build[15..]).ok()?.trim_end_matches('_');
    mark.strip_prefix("trap@")?.parse().ok()
}

struct Misbehave {
    mode: String,
    /// Bars this instance has seen since it was created or restored.
    heard: u64,
    traps_at: Option<u64>,
    at: Option<i64>,
    symbol: Option<String>,
    qty: i64,
    price: i64,
    work: u64,
    spam: usize,
    seen: u64,
    last_time: i64,
    disorder: u64,
    fills: u64,
    signals: u64,
}

/// Runs until the host interrupts it.
fn spin() -> ! {
    #[allow(clippy::empty_loop)]
    loop {}
}

fn notify(message: String) -> Action {
    Action::notify(Level::Info, message)
}

fn probe() -> String {
    let root = std::fs::read_dir("/").map(|d| d.count()).map_err(|e| e.kind());
    let env = std::env::vars().count();
    let args = std::env::args().count();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("fs={root:?} env={env} args={args} wall_ms={now} host_now={}", host::now())
}

impl Strategy for Misbehave {
    fn describe() -> Info {
        let text = |s: &str| ParamValue::Text(s.into());
        Info::new("misbehave", env!("CARGO_PKG_VERSION"), "misbehaves on request, for tests")
            .param("mode", text("ok"), "what to do")
            .param("at", text(""), "the bar time to do it at (every bar when empty)")
            .param("symbol", text(""), "the symbol to order (the bar's when empty)")
            .param("qty", ParamValue::Integer(1), "order quantity")
            .param("price", ParamValue::Integer(0), "the stop price in `stop` mode")
            .param("work", ParamValue::Integer(0), "loop iterations per bar in `slow` mode")
            .param("spam", ParamValue::Integer(1 << 20), "bytes to print in `spam` mode")
    }

    fn create(params: &Params) -> Result<Self, Error> {
        let at = match params.text("at")? {
            "" => None,
            at => Some(at.parse().map_err(|_| Error::invalid_param("at", "not an integer"))?),
        };
        let symbol = Some(params.text("symbol")?.to_string()).filter(|s| !s.is_empty());
        let config = Misbehave {
            mode: params.text("mode")?.into(),
            heard: 0,
            traps_at: build_traps_at(),
            at,
            symbol,
            qty: params.integer("qty")?,
            price: params.integer("price")?,
            work: params.integer("work")?.max(0) as u64,
            spam: params.integer("spam")?.max(0) as usize,
            seen: 0,
            last_time: 0,
            disorder: 0,
            fills: 0,
            signals: 0,
        };
        if config.mode == "trap-init" {
            panic!("asked to trap in create");
        }
        if config.mode == "loop-create" {
            spin();
        }
        if config.mode == "refuse-long" {
            return Err(Error::Other("no".repeat(1 << 19)));
        }
        Ok(config)
    }

    fn restore(params: &Params, state: &[u8]) -> Result<Self, Error> {
        if params.text("mode")? == "loop-restore" {
            spin();
        }
        if state.len() != 40 {
            return Err(Error::IncompatibleState("state must be 40 bytes".into()));
        }
        let word =
            |i: usize| state.get(i * 8..i * 8 + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        let mut config = Self::create(params)?;
        config.seen = word(0);
        config.last_time = word(1) as i64;
        config.disorder = word(2);
        config.fills = word(3);
        config.signals = word(4);
        if config.mode == "trap-restored" {
            config.mode = "trap".into();
        }
        Ok(config)
    }

    fn on_bars(&mut self, bars: &Bars, out: &mut Vec<BarAction>) {
        for bar in bars.iter() {
            self.heard += 1;
            if self.traps_at == Some(self.heard) {
                panic!("this build traps on its bar {}", self.heard);
            }
            self.seen += 1;
            if self.seen > 1 && bar.time <= self.last_time {
                self.disorder += 1;
            }
            self.last_time = self.last_time.max(bar.time);
            if self.mode == "stop-then-trap" && self.at.is_some_and(|at| bar.time > at) {
                panic!("asked to trap after placing a stop");
            }
            if self.mode == "buy-then-trap" && self.fills > 0 {
                panic!("asked to trap once filled");
            }
            if self.at.is_some_and(|at| at != bar.time) {
                continue;
            }
            let symbol = self.symbol.clone().unwrap_or_else(|| bar.symbol.to_string());
            let qty = Decimal::new(self.qty, 0);
            let action = match self.mode.as_str() {
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
                    for _ in 0..self.spam / 100 {
                        println!("{line}");
                        eprintln!("{line}");
                    }
                    continue;
                }
                "probe" => notify(probe()),
                "buy" | "buy-then-trap" | "loop-fill" | "loop-reject" => {
                    Action::Submit(Order::market(self.seen, &symbol, Side::Buy, qty))
                }
                "stop" | "stop-then-trap" => {
                    let stop = OrderType::Stop(Decimal::new(self.price, 0));
                    Action::Submit(Order::market(self.seen, &symbol, Side::Buy, qty).priced(stop))
                }
                "reuse" => Action::Submit(Order::market(1, &symbol, Side::Buy, qty)),
                "long-symbol" => Action::Submit(Order::market(self.seen, &"S".repeat(1 << 20), Side::Buy, qty)),
                "flood" if self.seen <= 20 => {
                    let text = "f".repeat(4096);
                    out.extend((0..10_000).map(|_| bar.act(notify(text.clone()))));
                    continue;
                }
                "many" => {
                    out.extend((0..10_001).map(|_| bar.act(notify(String::new()))));
                    continue;
                }
                "leak" => {
                    for _ in 0..1_000_000 {
                        std::mem::forget(wasip2::clocks::monotonic_clock::subscribe_duration(0));
                    }
                    continue;
                }
                "alias" => {
                    let buffer: &'static mut str = "a".repeat(1 << 20).leak();
                    let (ptr, len) = (buffer.as_mut_ptr(), buffer.len());
                    out.extend((0..10_000).map(|_| {
                        // SAFETY: none. Every string claims the same bytes,
                        // which the guest never frees: the point is to hand
                        // the host one buffer many times over.
                        let text = unsafe { String::from_raw_parts(ptr, len, len) };
                        bar.act(notify(text))
                    }));
                    continue;
                }
                "slow" => {
                    let mut x = 0_u64;
                    for i in 0..self.work {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                    }
                    continue;
                }
                "random" => {
                    use std::hash::{BuildHasher, Hasher};
                    let mut hasher = std::hash::RandomState::new().build_hasher();
                    hasher.write_i64(bar.time);
                    notify(format!("coin {}", hasher.finish() % 2))
                }
                "recurse" => {
                    #[allow(unconditional_recursion)] // the point: it runs out of stack
                    fn deeper(n: u64) -> u64 {
                        std::hint::black_box(deeper(std::hint::black_box(n) + 1)) + 1
                    }
                    notify(format!("depth {}", deeper(0)))
                }
                "exit" => std::process::exit(3),
                "sleep" => {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                    continue;
                }
                "wait" => {
                    let start = std::time::Instant::now();
                    while start.elapsed() < std::time::Duration::from_secs(3600) {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                "account" => {
                    let (account, position) = (host::account(), host::position(&symbol));
                    let show = |d: Decimal| format!("{}e-{}", d.mantissa, d.scale);
                    notify(format!(
                        "cash {} equity {} position {}",
                        show(account.cash),
                        show(account.equity),
                        show(position)
                    ))
                }
                "churn" => {
                    let side = if self.seen % 2 == 1 { Side::Buy } else { Side::Sell };
                    Action::Submit(Order::market(self.seen, &symbol, side, qty).time_in_force(TimeInForce::Day))
                }
                _ => continue,
            };
            out.push(bar.act(action));
        }
        if self.mode == "ok" && !bars.is_empty() {
            let last = (bars.len() - 1) as u32;
            out.push(BarAction { bar: last, action: notify(format!("seen {}", self.seen)) });
        }
    }

    fn on_fill(&mut self, fill: &Fill) -> Vec<Action> {
        if self.mode == "loop-fill" {
            spin();
        }
        self.fills += 1;
        vec![notify(format!("filled {}", fill.order))]
    }

    fn on_reject(&mut self, rejection: &Rejection) -> Vec<Action> {
        if self.mode == "loop-reject" {
            spin();
        }
        vec![notify(format!("rejected {}: {}", rejection.order, rejection.reason))]
    }

    fn on_signal(&mut self, signal: &Signal) -> Vec<Action> {
        if self.mode == "loop-signal" {
            spin();
        }
        self.signals += 1;
        vec![notify(format!("signal {}: {}", signal.source, signal.payload))]
    }

    fn save_state(&self) -> Vec<u8> {
        if self.mode == "loop-save" {
            spin();
        }
        if self.mode == "trap-save" {
            panic!("asked to trap in save-state");
        }
        if self.mode == "big-state" {
            return vec![7; 32 << 20];
        }
        [self.seen, self.last_time as u64, self.disorder, self.fills, self.signals]
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .collect()
    }
}

export_strategy!(Misbehave);

//! The WASI world a strategy lives in: empty on purpose.
//!
//! No directories, environment, arguments or sockets. Standard output and
//! error go to the host log with a byte budget per call; clocks read the
//! host's clock (virtual in a backtest) and randomness is seeded in a backtest.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::budget::{Budget, LogRate};
use super::host_impl::HostState;
use crate::bar::Millis;

/// Where a strategy's clock comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// Wall-clock time; live trading.
    System,
    /// Set by the engine to the time of the bar being processed.
    Virtual { now: Arc<AtomicI64> },
}

impl Clock {
    pub fn virtual_at(start: Millis) -> Self {
        Clock::Virtual { now: Arc::new(AtomicI64::new(start)) }
    }

    pub fn now(&self) -> Millis {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as Millis),
            Clock::Virtual { now } => now.load(Ordering::Relaxed),
        }
    }

    /// Moves a virtual clock; a system clock ignores it.
    pub fn set(&self, time: Millis) {
        if let Clock::Virtual { now } = self {
            now.store(time, Ordering::Relaxed);
        }
    }

    pub fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual { .. })
    }

    /// A clock of one strategy's own, starting where this one is: a virtual
    /// clock follows the inputs of the strategy it belongs to, so strategies
    /// replaying side by side never move each other's time.
    pub fn own(&self) -> Self {
        match self {
            Clock::System => Clock::System,
            Clock::Virtual { now } => Clock::virtual_at(now.load(Ordering::Relaxed)),
        }
    }
}

struct WallClock(Clock);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now().max(0) as u64)
    }
}

/// Nanoseconds since the first reading, driven by the virtual clock.
struct MonotonicClock {
    clock: Clock,
    start: Millis,
}

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        (self.clock.now().saturating_sub(self.start)).max(0) as u64 * 1_000_000
    }
}

/// Everything a strategy's `Store` holds.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: Limiter,
    pub(super) host: HostState,
    pub(super) output: Arc<LogBudget>,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl StoreData {
    /// `log_rate` is the strategy's log bytes per minute, shared by the
    /// stores it runs in one after another.
    pub(super) fn new(mut host: HostState, budget: &Budget, log_rate: Option<Arc<LogRate>>) -> Self {
        let output = Arc::new(LogBudget::new(host.strategy.clone(), budget.log_bytes_per_call, log_rate));
        host.output = Some(output.clone());
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogStream { budget: output.clone(), stream: "stdout" })
            .stderr(LogStream { budget: output.clone(), stream: "stderr" })
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if host.clock.is_virtual() {
            let start = host.clock.now();
            wasi.wall_clock(WallClock(host.clock.clone()))
                .monotonic_clock(MonotonicClock { clock: host.clock.clone(), start })
                .secure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(0x5eed)))
                .insecure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(0x1e55)))
                .insecure_random_seed(0x5eed_5eed);
        }
        let limits = Limiter::new(budget);
        Self { wasi: wasi.build(), table: ResourceTable::new(), limits, host, output }
    }
}

/// A store's memory and tables, capped for the store as a whole: a
/// component's core modules may each have a memory, and together they get
/// the budget once, not once each.
pub(super) struct Limiter {
    memory_limit: usize,
    memory: usize,
    /// Bytes the last growth added, taken back if it then failed.
    growing: usize,
    instances: usize,
    tables: usize,
    table_elements: usize,
}

/// A store grew its memory or a table past its budget.
#[derive(Debug, thiserror::Error)]
#[error("grew past its memory budget of {limit} bytes")]
pub(super) struct OverBudget {
    pub limit: usize,
}

impl Limiter {
    fn new(budget: &Budget) -> Self {
        Self {
            memory_limit: budget.memory,
            memory: 0,
            growing: 0,
            instances: budget.instances as usize,
            tables: budget.tables as usize,
            table_elements: budget.table_elements,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let added = desired.saturating_sub(current);
        let total = self.memory.saturating_add(added);
        if total > self.memory_limit {
            return Err(OverBudget { limit: self.memory_limit }.into());
        }
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.memory = total;
        self.growing = added;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory -= std::mem::take(&mut self.growing);
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(OverBudget { limit: self.memory_limit }.into());
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        // Their sizes share one budget; their number hardly matters.
        self.instances
    }
}

/// A fixed pseudo-random byte sequence (splitmix64), so backtests repeat.
fn seeded_bytes(seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..512)
        .flat_map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect()
}

/// Links the WASI interfaces a Rust `std` guest imports, and nothing else.
///
/// Sockets are deliberately absent, so a component importing them fails to
/// link. Filesystem types link but no directory is ever preopened.
pub(super) fn add_wasi(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::WasiCli;
    use wasmtime_wasi::clocks::WasiClocks;
    use wasmtime_wasi::filesystem::WasiFilesystem;
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
    use wasmtime_wasi::random::WasiRandom;

    let l = linker;
    wasmtime_wasi_io_add(l)?;
    clocks::wall_clock::add_to_linker::<StoreData, WasiClocks>(
        l,
        <StoreData as wasmtime_wasi::clocks::WasiClocksView>::clocks,
    )?;
    clocks::monotonic_clock::add_to_linker::<StoreData, WasiClocks>(
        l,
        <StoreData as wasmtime_wasi::clocks::WasiClocksView>::clocks,
    )?;
    never_wait(l)?;
    random::random::add_to_linker::<StoreData, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<StoreData, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<StoreData, WasiRandom>(l, |t| t.wasi.random())?;
    let cli_view = <StoreData as wasmtime_wasi::cli::WasiCliView>::cli;
    cli::exit::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    cli::environment::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    cli::stdin::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    cli::stdout::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    cli::stderr::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    cli::terminal_input::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    cli::terminal_output::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    cli::terminal_stdin::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    cli::terminal_stdout::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    cli::terminal_stderr::add_to_linker::<StoreData, WasiCli>(l, cli_view)?;
    let fs_view = <StoreData as wasmtime_wasi::filesystem::WasiFilesystemView>::filesystem;
    filesystem::preopens::add_to_linker::<StoreData, WasiFilesystem>(l, fs_view)?;
    sync::filesystem::types::add_to_linker::<StoreData, WasiFilesystem>(l, fs_view)?;
    Ok(())
}

/// The monotonic clock's timers, as WASI 0.2 names them.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A pollable that is always ready.
struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

/// Replaces the monotonic clock's timers with ones that are ready at once.
///
/// A guest blocked in a host call runs no wasm, so the epoch deadline cannot
/// interrupt it: `std::thread::sleep` (a timer, then `poll` or `block`)
/// would hold its thread, and every strategy and the shutdown behind it, for
/// as long as it asked. With these timers no WASI call a strategy can reach
/// waits: a sleep returns at once, and a strategy that spins waiting for
/// time to pass spins in wasm, where its deadline stops it. Every other
/// pollable it can get (stdout, stderr, an empty stdin) is ready already.
fn never_wait(l: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    l.allow_shadowing(true);
    let mut clock = l.instance(MONOTONIC_CLOCK)?;
    for timer in ["subscribe-duration", "subscribe-instant"] {
        clock.func_wrap(timer, |mut store: wasmtime::StoreContextMut<'_, StoreData>, (_,): (u64,)| {
            let table = &mut store.data_mut().table;
            let ready = table.push(Ready)?;
            Ok((wasmtime_wasi::p2::subscribe(table, ready)?,))
        })?;
    }
    l.allow_shadowing(false);
    Ok(())
}

fn wasmtime_wasi_io_add(l: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::sync::io;
    io::error::add_to_linker::<StoreData, TableData>(l, |t| &mut t.table)?;
    io::poll::add_to_linker::<StoreData, TableData>(l, |t| &mut t.table)?;
    io::streams::add_to_linker::<StoreData, TableData>(l, |t| &mut t.table)?;
    Ok(())
}

struct TableData;

impl wasmtime::component::HasData for TableData {
    type Data<'a> = &'a mut ResourceTable;
}

/// Bytes a strategy may still write to stdout/stderr in the current call.
pub(super) struct LogBudget {
    strategy: Arc<str>,
    per_call: usize,
    /// Bytes per minute, in host mode.
    per_minute: Option<Arc<LogRate>>,
    remaining: AtomicUsize,
    dropped: AtomicUsize,
    partial: Mutex<Vec<u8>>,
    /// What the guest wrote to stderr in the current call, up to
    /// [`super::convert::MAX_GUEST_TEXT`] bytes: a Rust guest's panic
    /// message, for the fault it ends in.
    last_words: Mutex<Vec<u8>>,
}

impl LogBudget {
    fn new(strategy: Arc<str>, per_call: usize, per_minute: Option<Arc<LogRate>>) -> Self {
        Self {
            strategy,
            per_call,
            per_minute,
            remaining: AtomicUsize::new(per_call),
            dropped: AtomicUsize::new(0),
            partial: Mutex::new(Vec::new()),
            last_words: Mutex::new(Vec::new()),
        }
    }

    /// What the guest wrote to stderr during the current call, in one line.
    pub(super) fn last_words(&self) -> Option<String> {
        let words = self.last_words.lock().ok()?;
        let text = String::from_utf8_lossy(&words);
        let lines: Vec<&str> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("note:")).collect();
        (!lines.is_empty()).then(|| super::convert::bounded(&lines.join(" ")))
    }

    /// Called before each guest call: refills the budget and reports drops.
    pub(super) fn reset(&self) {
        self.remaining.store(self.per_call, Ordering::Relaxed);
        if let Ok(mut words) = self.last_words.lock() {
            words.clear();
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(strategy = %self.strategy, dropped, "strategy output over budget was dropped");
        }
    }

    /// Takes up to `len` bytes of budget and returns how many were granted.
    fn take(&self, len: usize) -> usize {
        if !self.minute_allows(len) {
            self.dropped.fetch_add(len, Ordering::Relaxed);
            return 0;
        }
        let allowed = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| Some(r.saturating_sub(len)))
            .unwrap_or(0)
            .min(len);
        self.dropped.fetch_add(len - allowed, Ordering::Relaxed);
        allowed
    }

    /// Whether `len` bytes fit this minute's log budget (always, without
    /// one); a refusal is counted as a flood.
    fn minute_allows(&self, len: usize) -> bool {
        self.per_minute.as_ref().is_none_or(|rate| rate.admit(len))
    }

    /// Whether a whole message of `len` bytes fits the budget.
    pub(super) fn spend(&self, len: usize) -> bool {
        self.take(len) == len
    }

    fn write(&self, stream: &'static str, bytes: &[u8]) {
        if stream == "stderr"
            && let Ok(mut words) = self.last_words.lock()
        {
            let room = super::convert::MAX_GUEST_TEXT.saturating_sub(words.len());
            words.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        let allowed = self.take(bytes.len());
        let Ok(mut partial) = self.partial.lock() else { return };
        partial.extend_from_slice(&bytes[..allowed]);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            tracing::info!(strategy = %self.strategy, stream, "{}", text.trim_end());
        }
    }
}

struct LogStream {
    budget: Arc<LogBudget>,
    stream: &'static str,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LogStream { budget: self.budget.clone(), stream: self.stream })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LogStream { budget: self.budget.clone(), stream: self.stream })
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.budget.write(self.stream, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept, so a chatty guest never fails (and panics) on a
        // write; bytes over the budget are counted and dropped instead.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.budget.write(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

//! The sandboxed WebAssembly component runtime.
//!
//! One wasmtime [`Engine`] with the pooling allocator serves every plugin. A
//! [`Plugin`] is a compiled, contract-checked component with its
//! `InstancePre`; each running strategy is a [`WasmStrategy`] with its own
//! `Store`, memory cap and per-call epoch deadline.

mod bindings;
mod budget;
mod cache;
mod compiler;
mod contract;
mod convert;
mod host_impl;
mod instance;
mod sandbox;
mod shape;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rust_decimal::Decimal;
use sha2::Digest as _;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use self::budget::{Budget, LimitsSection, Rates};
pub use self::cache::{ArtifactCache, CacheError};
pub use self::compiler::{CHILD_COMMAND, CompileLimits, Compiler, isolate_compilation};
pub use self::contract::{CONTRACT_VERSION, Inspection, inspect};
pub use self::convert::{ContractError, MAX_GUEST_TEXT, bounded};
pub use self::instance::WasmStrategy;
pub use self::sandbox::Clock;
use self::sandbox::StoreData;
pub use self::shape::{Shape, ShapeError, ShapeLimits};

/// Core instances one strategy's store may hold (see the README's sandbox
/// section for what guests need).
const CORE_INSTANCES_PER_STORE: u32 = 48;

/// The most native stack a guest call may use, in bytes.
const MAX_WASM_STACK: usize = 512 << 10;

/// Bytes of each freed memory and table slot kept resident for reuse.
const KEEP_RESIDENT: usize = 256 << 10;

/// How often the engine's epoch advances; the unit of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Plugins bundled into the binary, by name.
pub const BUNDLED: &[(&str, &[u8])] = &[("sma-crossover", include_bytes!(env!("STRATBOX_SMA_CROSSOVER_WASM")))];

/// The most linear memory any one store may be budgeted.
pub const MAX_STORE_MEMORY: usize = 4 << 30;

/// The runtime's settings and the default limits of every strategy instance.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// What an instance may use unless its own budget says otherwise.
    pub budget: Budget,
    /// Instances that may exist at once (sizes the pooling allocator).
    pub max_instances: u32,
    /// Restarts allowed within `fault_window`; one fault more and the
    /// strategy is quarantined (marked failed) until a new build revives it.
    pub max_restarts: u32,
    /// The window faults are counted in: a strategy that faults rarely is
    /// restarted each time, one that faults in bursts is stopped.
    pub fault_window: Duration,
    /// Delay before the first restart of a live strategy; doubles each time.
    pub restart_backoff: Duration,
    /// Largest `.wasm` file accepted, in bytes.
    pub max_plugin_bytes: usize,
    /// Where components that are not bundled are compiled.
    pub compiler: Compiler,
    /// What a component's code may add up to, checked before compiling.
    pub shape: ShapeLimits,
    /// Where components compiled in the child are kept, to be loaded
    /// instead of compiled again (see [`ArtifactCache`]); none by default.
    pub compile_cache: Option<std::path::PathBuf>,
    /// No epoch deadline, memory limiter or hostcall fuel at all: only for
    /// measuring what those cost (`benches/sandbox.rs`). Components must be
    /// compiled in this process.
    #[doc(hidden)]
    pub unmetered: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            budget: Budget::default(),
            max_instances: 64,
            max_restarts: 3,
            fault_window: Duration::from_secs(600),
            restart_backoff: Duration::from_millis(100),
            max_plugin_bytes: 64 << 20,
            compiler: Compiler::for_this_process(CompileLimits::default()),
            shape: ShapeLimits::default(),
            compile_cache: None,
            unmetered: false,
        }
    }
}

/// Why a plugin could not be loaded or started.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure the WebAssembly engine: {message}")]
    Engine { message: String },
    #[error("cannot read plugin {path}")]
    Read { path: String, source: std::io::Error },
    #[error("plugin `{plugin}` is {size} bytes, over the limit of {limit}")]
    TooLarge { plugin: String, size: usize, limit: usize },
    #[error("plugin `{plugin}` is not a WebAssembly component: {reason}")]
    NotAComponent { plugin: String, reason: String },
    #[error("plugin `{plugin}` targets {found}, but this host implements stratbox:strategy@{expected}: {hint}")]
    WrongVersion { plugin: String, found: String, expected: &'static str, hint: &'static str },
    #[error("plugin `{plugin}` does not export stratbox:strategy/strategy@{expected} (it exports: {exports})")]
    MissingExport { plugin: String, exports: String, expected: &'static str },
    #[error("plugin `{plugin}` imports `{import}`, which strategies may not use")]
    ForbiddenImport { plugin: String, import: String },
    #[error("plugin `{plugin}` cannot be linked: {message}")]
    Link { plugin: String, message: String },
    #[error("plugin `{plugin}` failed to start: {message}")]
    Start { plugin: String, message: String },
    #[error("plugin `{plugin}`: {message}")]
    Param { plugin: String, message: String },
    #[error("plugin `{plugin}` rejected its parameters: {message}")]
    Init { plugin: String, message: String },
    #[error("plugin `{plugin}` could not be compiled: {reason}")]
    Compile { plugin: String, reason: String },
    /// Kept whole (not as a `source`, which error chains would print twice).
    #[error("plugin `{plugin}` was refused before compiling: it {shape}")]
    Shape { plugin: String, shape: ShapeError },
    #[error("plugin `{plugin}` is build {found}, but the config pins {pinned}")]
    PinMismatch { plugin: String, found: String, pinned: String },
    #[error("no bundled plugin named `{name}` (bundled: {bundled})")]
    UnknownPlugin { name: String, bundled: String },
}

/// The kind of value a parameter takes: its default's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    Integer,
    Decimal,
    Text,
    Boolean,
}

/// A typed parameter value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ParamValue {
    Integer { value: i64 },
    Decimal { value: Decimal },
    Text { value: String },
    Boolean { value: bool },
}

/// The longest text parameter accepted, in bytes.
const MAX_TEXT_PARAM: usize = 4096;

impl ParamValue {
    pub fn kind(&self) -> ParamKind {
        match self {
            ParamValue::Integer { .. } => ParamKind::Integer,
            ParamValue::Decimal { .. } => ParamKind::Decimal,
            ParamValue::Text { .. } => ParamKind::Text,
            ParamValue::Boolean { .. } => ParamKind::Boolean,
        }
    }

    /// Reads `text` as a value of `kind`.
    pub fn parse(kind: ParamKind, text: &str) -> Option<Self> {
        Some(match kind {
            ParamKind::Integer => ParamValue::Integer { value: text.trim().parse().ok()? },
            ParamKind::Decimal => ParamValue::Decimal { value: text.trim().parse().ok()? },
            ParamKind::Boolean => ParamValue::Boolean { value: text.trim().parse().ok()? },
            ParamKind::Text if text.len() <= MAX_TEXT_PARAM => ParamValue::Text { value: text.into() },
            ParamKind::Text => return None,
        })
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Integer { value } => write!(f, "{value}"),
            ParamValue::Decimal { value } => write!(f, "{value}"),
            ParamValue::Text { value } => write!(f, "{value:?}"),
            ParamValue::Boolean { value } => write!(f, "{value}"),
        }
    }
}

impl std::fmt::Display for ParamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParamKind::Integer => "integer",
            ParamKind::Decimal => "decimal",
            ParamKind::Text => "text",
            ParamKind::Boolean => "boolean",
        })
    }
}

/// One parameter a plugin declares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParamSpec {
    pub key: String,
    pub kind: ParamKind,
    pub default: ParamValue,
    pub description: String,
}

/// What a plugin says about itself through `describe`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub params: Vec<ParamSpec>,
}

/// A compiled plugin that satisfies the contract, ready to instantiate.
pub struct Plugin {
    /// What the operator called it: a bundled name or a file path.
    pub label: String,
    /// SHA-256 of the component's bytes, in hex.
    pub sha256: String,
    pub info: PluginInfo,
    pre: bindings::PluginPre<StoreData>,
}

impl Plugin {
    /// Refuses this build unless its SHA-256 is `pinned` (when there is a pin).
    pub fn check_pin(&self, pinned: Option<&str>) -> Result<(), RuntimeError> {
        match pinned {
            Some(pin) if !pin.trim().eq_ignore_ascii_case(&self.sha256) => Err(RuntimeError::PinMismatch {
                plugin: self.label.clone(),
                found: self.sha256.clone(),
                pinned: pin.chars().take(64).collect(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks `params` against the declared specs: no unknown or repeated
    /// keys, values of the declared kind. Returns every declared parameter,
    /// in declared order, with defaults for those not given.
    pub fn resolve_params(&self, params: &[(String, String)]) -> Result<Vec<(String, ParamValue)>, RuntimeError> {
        let err = |message: String| RuntimeError::Param { plugin: self.label.clone(), message };
        let mut given: HashMap<&str, ParamValue> = HashMap::new();
        for (key, value) in params {
            let Some(spec) = self.info.params.iter().find(|s| &s.key == key) else {
                let known: Vec<_> = self.info.params.iter().map(|s| s.key.as_str()).collect();
                return Err(err(format!("unknown parameter `{key}` (known: {})", known.join(", "))));
            };
            let Some(typed) = ParamValue::parse(spec.kind, value) else {
                let mut shown = value.clone();
                convert::truncate_utf8(&mut shown, 64);
                return Err(err(format!("parameter `{key}` expects {}, got `{shown}`", spec.kind)));
            };
            if given.insert(key, typed).is_some() {
                return Err(err(format!("parameter `{key}` is given twice")));
            }
        }
        Ok(self
            .info
            .params
            .iter()
            .map(|spec| (spec.key.clone(), given.remove(spec.key.as_str()).unwrap_or_else(|| spec.default.clone())))
            .collect())
    }
}

/// Advances the engine's epoch until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The shared WebAssembly engine and linker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StoreData>,
    config: RuntimeConfig,
    cache: Option<ArtifactCache>,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine { message: format!("{e:#}") };
        let mut wasm = wasm_config();
        wasm.epoch_interruption(!config.unmetered);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances)
            // A Rust guest has 3 core instances; a componentize-py one 38.
            .total_core_instances(config.max_instances.saturating_mul(CORE_INSTANCES_PER_STORE))
            .total_memories(config.max_instances.saturating_mul(2))
            .total_tables(config.max_instances.saturating_mul(4))
            .total_stacks(config.max_instances)
            // Each store's own budget is enforced by its limiter; a slot
            // holds the largest any store may be given.
            .max_memory_size(MAX_STORE_MEMORY)
            // Reset a freed slot's first pages with memset rather than
            // returning them to the kernel: instantiating then costs no page
            // faults and no TLB shootdowns. A small guest fits entirely.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        sandbox::add_wasi(&mut linker).map_err(engine_err)?;
        bindings::Plugin::add_to_linker::<StoreData, HostData>(&mut linker, |d| &mut d.host).map_err(engine_err)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("stratbox-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError::Engine { message: e.to_string() })?;
        // Without a cache every start compiles again: slower, never wrong.
        let cache = config.compile_cache.as_deref().and_then(|dir| match ArtifactCache::open(dir, &engine) {
            Ok(cache) => Some(cache),
            Err(error) => {
                tracing::warn!(%error, "compiled plugins will not be kept");
                None
            }
        });
        Ok(Self { engine, linker, config, cache, _ticker: EpochTicker { stop, thread: Some(thread) } })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Loads a plugin by bundled name or `.wasm` path.
    pub fn load_named(&self, name_or_path: &str) -> Result<Arc<Plugin>, RuntimeError> {
        if let Some((name, bytes)) = BUNDLED.iter().find(|(name, _)| *name == name_or_path) {
            return self.load_bundled(name, bytes);
        }
        let looks_like_path = name_or_path.ends_with(".wasm") || name_or_path.contains(['/', '\\']);
        if !looks_like_path {
            let bundled: Vec<_> = BUNDLED.iter().map(|(n, _)| *n).collect();
            return Err(RuntimeError::UnknownPlugin { name: name_or_path.into(), bundled: bundled.join(", ") });
        }
        let bytes = read_plugin(std::path::Path::new(name_or_path), self.config.max_plugin_bytes)?;
        self.load(name_or_path, &bytes)
    }

    /// Compiles `bytes`, checks them against the contract and asks the
    /// plugin to describe itself.
    pub fn load(&self, label: &str, bytes: &[u8]) -> Result<Arc<Plugin>, RuntimeError> {
        let component = self.compile(label, bytes)?;
        self.prepare(label, bytes, &component)
    }

    /// Compiles `bytes`, refusing what is too large or not a component.
    fn compile(&self, label: &str, bytes: &[u8]) -> Result<Component, RuntimeError> {
        if bytes.len() > self.config.max_plugin_bytes {
            return Err(RuntimeError::TooLarge {
                plugin: label.into(),
                size: bytes.len(),
                limit: self.config.max_plugin_bytes,
            });
        }
        contract::check_preamble(label, bytes)?;
        shape::check(bytes, self.config.shape).map_err(|shape| match shape {
            ShapeError::Malformed { reason } => RuntimeError::NotAComponent { plugin: label.into(), reason },
            shape => RuntimeError::Shape { plugin: label.into(), shape },
        })?;
        let Compiler::Child { program, limits } = &self.config.compiler else {
            return Component::new(&self.engine, bytes)
                .map_err(|e| RuntimeError::NotAComponent { plugin: label.into(), reason: format!("{e:#}") });
        };
        let sha256 = hex::encode(sha2::Sha256::digest(bytes));
        let cached = self.cache.as_ref().and_then(|cache| cache.get(&sha256));
        let artifact = match cached {
            Some(artifact) => artifact,
            None => {
                let artifact = compiler::compile_in_child(label, program, *limits, bytes)?;
                if let Some(cache) = &self.cache {
                    cache.put(&sha256, &artifact);
                }
                artifact
            }
        };
        // SAFETY: `deserialize` trusts its bytes to be wasmtime's own
        // compiled code. These come from a child process of this binary,
        // which compiled them with this engine's settings
        // (`wasm_config`), over a pipe only it writes, and they match the
        // digest it computed; or from this host's cache, keyed by this
        // engine's compatibility hash and checked against an HMAC tag under
        // a key only this host's data folder holds. Nothing else is ever
        // deserialized.
        unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| RuntimeError::Compile { plugin: label.into(), reason: format!("{e:#}") })
    }

    /// Compiles a component bundled into this binary, in this process.
    fn load_bundled(&self, label: &str, bytes: &[u8]) -> Result<Arc<Plugin>, RuntimeError> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| RuntimeError::NotAComponent { plugin: label.into(), reason: format!("{e:#}") })?;
        self.prepare(label, bytes, &component)
    }

    /// Checks a compiled component against the contract, links it and asks
    /// it to describe itself.
    fn prepare(&self, label: &str, bytes: &[u8], component: &Component) -> Result<Arc<Plugin>, RuntimeError> {
        contract::check_component(label, &self.engine, component)?;
        let pre = self
            .linker
            .instantiate_pre(component)
            .and_then(bindings::PluginPre::new)
            .map_err(|e| RuntimeError::Link { plugin: label.into(), message: format!("{e:#}") })?;
        let info = instance::describe(&pre, label, &self.config)?;
        let sha256 = hex::encode(sha2::Sha256::digest(bytes));
        Ok(Arc::new(Plugin { label: label.into(), sha256, info, pre }))
    }

    /// Starts an instance of `plugin` with checked parameters, within the
    /// runtime's default budget.
    pub fn instantiate(
        &self,
        plugin: &Arc<Plugin>,
        params: &[(String, String)],
        clock: Clock,
    ) -> Result<WasmStrategy, RuntimeError> {
        self.instantiate_within(plugin, params, clock, &self.config.budget)
    }

    /// Starts an instance of `plugin` within `budget`.
    pub fn instantiate_within(
        &self,
        plugin: &Arc<Plugin>,
        params: &[(String, String)],
        clock: Clock,
        budget: &Budget,
    ) -> Result<WasmStrategy, RuntimeError> {
        let resolved = plugin.resolve_params(params)?;
        WasmStrategy::start(plugin.clone(), resolved, clock, &self.config, budget)
    }
}

/// The engine settings that shape compiled code, shared by the host and
/// its compiler child so the child's artifacts fit the host's engine.
fn wasm_config() -> Config {
    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        // Deep recursion traps (and restarts the strategy) here, not in the
        // host's own stack.
        .max_wasm_stack(MAX_WASM_STACK)
        // Concurrency support makes every call several times slower and the
        // contract is synchronous.
        .concurrency_support(false);
    // `perf` can name guest functions when asked to.
    if std::env::var_os("STRATBOX_PERFMAP").is_some() {
        wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    wasm
}

/// The compiler child's work (`stratbox __compile`): compiles the component
/// on stdin within `memory` bytes of address space; see [`Compiler`].
pub fn serve_compile(memory: u64) -> Result<(), String> {
    compiler::yield_to_strategies();
    let engine = Engine::new(&wasm_config()).map_err(|e| format!("{e:#}"))?;
    compiler::serve(&engine, memory)
}

/// Reads a `.wasm` file, refusing one over `limit` bytes before reading it.
pub fn read_plugin(path: &std::path::Path, limit: usize) -> Result<Vec<u8>, RuntimeError> {
    let read_err = |source| RuntimeError::Read { path: path.display().to_string(), source };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > limit as u64 {
        return Err(RuntimeError::TooLarge { plugin: path.display().to_string(), size: size as usize, limit });
    }
    std::fs::read(path).map_err(read_err)
}

struct HostData;

impl wasmtime::component::HasData for HostData {
    type Data<'a> = &'a mut host_impl::HostState;
}

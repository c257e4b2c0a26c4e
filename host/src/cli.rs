//! The command line: argument parsing and one function per command.

use std::hash::BuildHasher;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::bench::{self, BenchError};
use crate::broker::PaperBroker;
use crate::config::{BrokerConfig, Config, ConfigError, RuntimeSection};
use crate::engine::{Engine, EngineError, LiveError, RunOptions};
use crate::feed::{CsvLimits, FeedError};
use crate::risk::RiskLimits;
use crate::runtime::{self, Clock, Runtime, RuntimeError};
use crate::scaffold::{Lang, ScaffoldError};

#[derive(Debug, Parser)]
#[command(name = "stratbox", version, about = "A host for sandboxed WebAssembly trading strategies")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replays a CSV of bars through a strategy on the paper broker.
    Backtest {
        /// A bundled plugin name (e.g. sma-crossover) or a path to a .wasm component.
        #[arg(long)]
        strategy: String,
        #[command(flatten)]
        run: BarsRun,
        /// Bars per strategy call.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
        batch: u32,
        /// Takes [risk], [broker] and [runtime] from this config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Backtests every combination of a parameter grid (on every core) and
    /// prints the best; `sweep merge` joins the tables of a sharded sweep.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Sweep {
        #[command(subcommand)]
        merge: Option<SweepCommand>,
        /// A bundled plugin name or a path to a .wasm component.
        #[arg(long, required = true)]
        strategy: Option<String>,
        #[command(flatten)]
        run: BarsRun,
        /// A parameter's values: KEY=FROM..TO[:STEP] or KEY=A,B,...;
        /// repeatable, one per parameter swept.
        #[arg(long = "grid", value_name = "AXIS", required = true)]
        grid: Vec<crate::sweep::Axis>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Runs only shard I of N (0-based): for one pod of a cluster's
        /// indexed job; `sweep merge` joins the shards' tables.
        #[arg(long, value_name = "I/N")]
        shard: Option<crate::sweep::Shard>,
        /// What the table is sorted by, best first.
        #[arg(long, value_enum, default_value_t)]
        sort_by: crate::sweep::Metric,
        /// Writes the whole table here (JSON if it ends in .json, else CSV).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Rows printed.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Bars per strategy call.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
        batch: u32,
        /// Takes [risk], [broker] and [runtime] from this config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Runs the host until Ctrl-C (default: the embedded demo config).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides [server] listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Overrides the replay pace, in milliseconds per bar.
        #[arg(long)]
        pace_ms: Option<u64>,
        /// Exit when the feed ends instead of waiting for Ctrl-C.
        #[arg(long)]
        exit_when_done: bool,
    },
    /// Works with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Signs a Standard Webhook and prints a curl command that sends it.
    Sign {
        /// A `whsec_...` secret.
        #[arg(long)]
        secret: String,
        /// The JSON body to send.
        #[arg(long)]
        body: String,
        /// Where to send it.
        #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/alerts")]
        url: String,
        /// The delivery id; random if absent.
        #[arg(long)]
        id: Option<String>,
        /// Unix seconds; now if absent.
        #[arg(long)]
        timestamp: Option<i64>,
    },
    /// Halts or resumes trading on a venue, in the store of a host's
    /// config; a running host takes the change at its next sync.
    Venue {
        #[command(subcommand)]
        command: VenueCommand,
    },
    /// Asks a running host to act, through its control API.
    Ctl {
        /// The host's address.
        #[arg(long, env = "STRATBOX_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The API's bearer token (default: STRATBOX_API_TOKEN).
        #[arg(long, env = "STRATBOX_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Tables, or the host's JSON as it came.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(subcommand)]
        command: crate::client::CtlCommand,
    },
    /// Writes a new strategy project that builds into a plugin.
    New {
        /// The project's folder and the plugin's name.
        name: String,
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Where to create the folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Compiles the component on stdin (the host's compiler process).
    #[command(name = "__compile", hide = true)]
    CompileChild {
        #[arg(long)]
        memory_bytes: u64,
    },
    /// Measures bars per second through the engine, plugin against native.
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        bars: usize,
        #[arg(long, default_value_t = 1024)]
        batch: usize,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// A strategy run over a CSV of bars: what `backtest` and `plugin check`
/// share.
#[derive(Debug, clap::Args)]
pub struct BarsRun {
    /// CSV with a time column and open, high, low, close and volume; or a
    /// folder of them. Repeatable: the symbols' bars merge in time order and
    /// the strategy sees them all.
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// The instrument's symbol, with one file; otherwise (and by default)
    /// each file's name in capitals, e.g. IBM for IBM.csv.
    #[arg(long)]
    symbol: Option<String>,
    /// How the CSV writes its times, as a strftime pattern
    /// (`%Y-%m-%d %H:%M:%S`); detected from the first row when left out.
    #[arg(long)]
    time_format: Option<String>,
    /// The IANA time zone of the CSV's wall-clock times (default UTC).
    #[arg(long)]
    tz: Option<String>,
    /// A strategy parameter; repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl BarsRun {
    /// The files `--data` names: each file, and each folder's `.csv` files
    /// in name order.
    fn files(&self) -> Result<Vec<PathBuf>, FeedError> {
        let mut files = Vec::new();
        for path in &self.data {
            if path.is_dir() {
                let io = |source| FeedError::Io { path: path.display().to_string(), source };
                let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(io)?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
                    .collect();
                inside.sort();
                if inside.is_empty() {
                    let message = format!("{} holds no .csv file", path.display());
                    return Err(FeedError::Config { message });
                }
                files.extend(inside);
            } else {
                files.push(path.clone());
            }
        }
        Ok(files)
    }

    /// The bars of every file, each under its symbol, merged in time order.
    fn bars(&self) -> Result<Vec<crate::bar::Bar>, FeedError> {
        let time = crate::feed::TimeSpec::new(self.time_format.as_deref(), self.tz.as_deref())
            .map_err(|e| FeedError::Config { message: e.to_string() })?;
        let files = self.files()?;
        if self.symbol.is_some() && files.len() > 1 {
            let message = "--symbol names the one file's symbol; with several, each file's name is its symbol";
            return Err(FeedError::Config { message: message.into() });
        }
        let mut symbols: Vec<String> = Vec::new();
        let mut series = Vec::new();
        for file in &files {
            let symbol = self.symbol.clone().unwrap_or_else(|| {
                file.file_stem().map_or_else(|| "UNKNOWN".into(), |s| s.to_string_lossy().to_uppercase())
            });
            if symbols.contains(&symbol) {
                let message = format!("two files hold symbol {symbol}: give each symbol one file");
                return Err(FeedError::Config { message: crate::runtime::bounded(&message) });
            }
            series.push(crate::feed::load_csv_as(file, &symbol, CsvLimits::default(), &time)?);
            symbols.push(symbol);
        }
        Ok(crate::feed::merge(series))
    }
}

#[derive(Debug, Subcommand)]
pub enum SweepCommand {
    /// Joins shards' CSV tables into the table of the whole grid.
    Merge {
        #[arg(required = true)]
        tables: Vec<PathBuf>,
        /// Where the joined table goes (JSON if it ends in .json, else CSV).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        sort_by: crate::sweep::Metric,
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Runs a strategy twice over a CSV of bars, once through a save-state
    /// and restore halfway, and reports any difference in what it did.
    /// Exits 1 if the runs differ: crash recovery relies on determinism.
    Check {
        path: PathBuf,
        #[command(flatten)]
        run: BarsRun,
        /// Bars per strategy call.
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Shows a component's contract version, imports and exports, and
    /// whether this host can run it. Exits 1 if it cannot.
    Inspect {
        path: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum VenueCommand {
    /// Halts new orders on a venue until `resume`.
    Halt {
        /// `alpaca`, `binance` or `kalshi`.
        venue: String,
        #[arg(long)]
        config: PathBuf,
        /// Why, for the journal and `/health`.
        #[arg(long, default_value = "halted by hand")]
        note: String,
    },
    /// Lifts any halt of a venue (drift, credentials, by hand).
    Resume {
        venue: String,
        #[arg(long)]
        config: PathBuf,
    },
}

/// Carries out `stratbox venue ...` on the store named by the config.
fn venue_command(command: VenueCommand, out: &mut impl Write) -> Result<ExitCode, CliError> {
    let (venue, config, note) = match command {
        VenueCommand::Halt { venue, config, note } => (venue, config, Some(note)),
        VenueCommand::Resume { venue, config } => (venue, config, None),
    };
    let known = ["alpaca", "binance", "kalshi"];
    if !known.contains(&venue.as_str()) {
        return Err(CliError::UnknownVenue { venue: venue.clone() });
    }
    let config = Config::load(&config)?;
    let store = std::sync::Arc::new(crate::store::Store::open(std::path::Path::new(&config.store.path))?);
    let gate = crate::risk::RiskGate::persistent(store, &[venue.as_str()])?;
    let now = crate::bar::now_ms();
    let changed = match note {
        Some(note) => gate.halt(&venue, crate::risk::HaltReason::Operator { note }, now)?,
        None => gate.resume(&venue, now, "operator")?,
    };
    let trading = gate.trading(&venue);
    let state = serde_json::to_string(&trading.state).unwrap_or_default();
    let verb = if changed { "now" } else { "already" };
    writeln!(out, "{} is {verb} {}", trading.venue, state.trim_matches('"'))?;
    Ok(ExitCode::SUCCESS)
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))?;
    if key.is_empty() {
        return Err(format!("empty key in `{text}`"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Why a command failed; printed by `main` with its causes.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("backtest stopped: {0}")]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Tokio(std::io::Error),
    #[error("cannot listen for Ctrl-C and SIGTERM")]
    Signal(#[source] std::io::Error),
    #[error("unknown venue `{venue}`: expected alpaca, binance or kalshi")]
    UnknownVenue { venue: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Signature(#[from] crate::webhook::SignatureError),
    #[error(transparent)]
    Scaffold(#[from] ScaffoldError),
    #[error(transparent)]
    Check(#[from] crate::check::CheckError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error(transparent)]
    Sweep(#[from] Box<crate::sweep::SweepError>),
    #[error(transparent)]
    Table(#[from] crate::sweep::TableError),
    #[error("cannot use {path}")]
    File { path: String, source: std::io::Error },
}

/// The whole program: parses arguments, sets up logging, runs the command
/// and prints any error with its causes. `main` calls only this.
pub fn entry() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CompileChild { memory_bytes } = cli.command {
        return match runtime::serve_compile(memory_bytes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                ExitCode::FAILURE
            }
        };
    }
    // This is the stratbox binary: compile untrusted components in a
    // bounded child of it.
    if let Ok(program) = std::env::current_exe() {
        runtime::isolate_compilation(program);
    }
    let default_level = if matches!(cli.command, Command::Run { .. }) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let mut stdout = std::io::stdout();
    match run(cli, &mut stdout) {
        Ok(code) => code,
        Err(error) => {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command, writing results to `out`.
pub fn run(cli: Cli, out: &mut (impl Write + Send + 'static)) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Backtest { strategy, run, batch, config } => backtest(&strategy, &run, batch as usize, config, out),
        Command::Sweep { merge: Some(SweepCommand::Merge { tables, out: path, sort_by, top }), .. } => {
            let mut read = Vec::new();
            for table in &tables {
                let origin = table.display().to_string();
                let file =
                    std::fs::File::open(table).map_err(|source| CliError::File { path: origin.clone(), source })?;
                let (keys, rows) = crate::sweep::read_table(file, &origin)?;
                read.push((origin, keys, rows));
            }
            let (keys, rows) = crate::sweep::merge(read, sort_by)?;
            write_sweep(&rows, &keys, Some(&path), top, out)
        }
        Command::Sweep { merge: None, strategy, run, grid, jobs, shard, sort_by, out: path, top, batch, config } => {
            let strategy = strategy.unwrap_or_default();
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(1, 256);
            let (risk, broker, runtime_section, budget) = backtest_settings(config)?;
            let runtime = Runtime::new(runtime::RuntimeConfig {
                max_restarts: 0,
                max_instances: (jobs as u32 + 4).max(64),
                ..runtime_section.to_runtime(budget)
            })?;
            let plugin = runtime.load_named(&strategy)?;
            let grid = crate::sweep::Grid::new(grid).map_err(|e| Box::new(crate::sweep::SweepError::from(e)))?;
            let keys: Vec<String> = grid.keys().map(String::from).collect();
            let sweep = crate::sweep::Sweep {
                runtime: &runtime,
                plugin,
                fixed: run.params.clone(),
                grid,
                shard: shard.unwrap_or(crate::sweep::Shard::WHOLE),
                jobs,
                batch: batch as usize,
                risk,
                broker,
            };
            let bars = run.bars()?;
            let rows = sweep.run(&bars, sort_by).map_err(Box::new)?;
            match run.format {
                Format::Json if path.is_none() => {
                    crate::sweep::write_table(&rows, &keys, true, out)?;
                    Ok(ExitCode::SUCCESS)
                }
                _ => write_sweep(&rows, &keys, path.as_deref(), top, out),
            }
        }
        Command::Run { config, listen, pace_ms, exit_when_done } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::embedded_default()?,
            };
            let options = RunOptions { listen, pace_ms, exit_when_done };
            let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(CliError::Tokio)?;
            let stdout = std::io::stdout();
            tokio.block_on(async {
                // Listening from the first moment, so a signal during start-up
                // (e.g. the first sync) also stops the host gracefully.
                let shutdown = shutdown_signal().map_err(CliError::Signal)?;
                crate::engine::run_host(config, options, shutdown, stdout).await.map_err(CliError::from)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command: PluginCommand::Inspect { path, format } } => inspect(&path, format, out),
        Command::Ctl { url, token, format, command } => {
            crate::client::ctl(&url, token.as_deref(), command, format, out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command: PluginCommand::Check { path, run, batch } } => {
            let runtime =
                Runtime::new(runtime::RuntimeConfig { max_restarts: 0, max_instances: 8, ..Default::default() })?;
            let plugin = runtime.load_named(&path.display().to_string())?;
            let report = crate::check::check(&runtime, &plugin, &run.params, &run.bars()?, batch)?;
            match run.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report).unwrap_or_default())?,
                Format::Text => match &report.difference {
                    None => writeln!(
                        out,
                        "deterministic: {} bars, {} things done, the same after a save and restore at bar {}",
                        report.bars, report.events, report.restored_at
                    )?,
                    Some(difference) => writeln!(out, "NOT deterministic: {difference}")?,
                },
            }
            Ok(if report.is_deterministic() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Sign { secret, body, url, id, timestamp } => {
            let secret = crate::webhook::Secret::parse(&secret)?;
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let timestamp = timestamp.unwrap_or(now);
            let id = id.unwrap_or_else(|| {
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                std::hash::Hasher::write_i64(&mut hasher, timestamp);
                format!("msg_{:016x}", std::hash::Hasher::finish(&hasher))
            });
            let signature = secret.sign(&id, timestamp, body.as_bytes());
            let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
            writeln!(
                out,
                "curl -sS -X POST {} -H 'content-type: application/json' -H 'webhook-id: {id}' -H 'webhook-timestamp: {timestamp}' -H 'webhook-signature: {signature}' --data-binary {}",
                quote(&url),
                quote(&body)
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Venue { command } => venue_command(command, out),
        Command::CompileChild { memory_bytes } => {
            runtime::serve_compile(memory_bytes)
                .map_err(|reason| CliError::Runtime(RuntimeError::Compile { plugin: "stdin".into(), reason }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New { name, lang, dir } => {
            let root = crate::scaffold::create(&dir, &name, lang)?;
            writeln!(out, "created {}; build it as its README.md says", root.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { bars, batch, format } => {
            let report = bench::run(bars.max(1), batch.max(1))?;
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report).unwrap_or_default())?,
                Format::Text => {
                    for m in [&report.plugin, &report.native] {
                        writeln!(
                            out,
                            "{:<22} {:>9} bars in {:>7.3} s = {:>12.0} bars/s ({} fills)",
                            m.name, m.bars, m.seconds, m.bars_per_second, m.fills
                        )?;
                    }
                    writeln!(out, "plugin/native time ratio: {:.2}", report.ratio)?;
                    writeln!(out, "instantiate + init from InstancePre: {:.1} µs", report.instantiate_us)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A sweep's table: the best `top` rows printed, the whole written to
/// `path` if given.
fn write_sweep(
    rows: &[crate::sweep::Row],
    keys: &[String],
    path: Option<&std::path::Path>,
    top: usize,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    if let Some(path) = path {
        let name = path.display().to_string();
        let file = std::fs::File::create(path).map_err(|source| CliError::File { path: name.clone(), source })?;
        let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let mut file = std::io::BufWriter::new(file);
        crate::sweep::write_table(rows, keys, json, &mut file)?;
        file.flush().map_err(|source| CliError::File { path: name, source })?;
    }
    writeln!(out, "{} combinations; the best {}:", rows.len(), top.min(rows.len()))?;
    let mut shown = Vec::new();
    crate::sweep::write_table(&rows[..top.min(rows.len())], keys, false, &mut shown)?;
    out.write_all(&shown)?;
    Ok(ExitCode::SUCCESS)
}

/// What a backtest takes from a config file: the risk limits, the broker's
/// cash and commission, the runtime and the limits. A backtest has per-call
/// limits but none per minute of wall time: it is meant to run as fast as
/// the machine allows.
fn backtest_settings(
    config: Option<PathBuf>,
) -> Result<(RiskLimits, BrokerConfig, RuntimeSection, runtime::Budget), CliError> {
    let (risk, broker, runtime_section, budget) = match config {
        Some(path) => {
            let c = Config::load(&path)?;
            let budget = c.budget();
            (c.risk, c.broker, c.runtime, budget)
        }
        None => (RiskLimits::default(), BrokerConfig::default(), RuntimeSection::default(), runtime::Budget::default()),
    };
    Ok((risk, broker, runtime_section, runtime::Budget { per_minute: None, ..budget }))
}

fn backtest(
    strategy: &str,
    run: &BarsRun,
    batch: usize,
    config: Option<PathBuf>,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    let (risk, broker, runtime_section, budget) = backtest_settings(config)?;
    // A backtest must be reproducible: a fault ends it instead of restarting.
    let runtime = Runtime::new(runtime::RuntimeConfig { max_restarts: 0, ..runtime_section.to_runtime(budget) })?;
    let plugin = runtime.load_named(strategy)?;
    let params = &run.params;
    plugin.resolve_params(params)?;
    let bars = run.bars()?;
    let symbol = bars.first().map_or_else(|| "UNKNOWN".to_string(), |b| b.symbol.to_string());
    let first = bars.first().map_or(0, |b| b.time);
    let instance = runtime.instantiate(&plugin, params, Clock::virtual_at(first))?;
    let BrokerConfig { starting_cash, commission, .. } = broker;
    let mut engine = Engine::new(Box::new(instance), Box::new(PaperBroker::new(commission)), risk, starting_cash);
    engine.run(&bars, batch)?;
    let report = engine.report(&symbol);
    match run.format {
        Format::Json => writeln!(out, "{}", report.to_json())?,
        Format::Text => write!(out, "{}", report.to_text())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(path: &std::path::Path, format: Format, out: &mut impl Write) -> Result<ExitCode, CliError> {
    let runtime = Runtime::new(runtime::RuntimeConfig { max_instances: 4, ..Default::default() })?;
    let config = runtime.config().clone();
    let bytes = runtime::read_plugin(path, config.max_plugin_bytes)?;
    let report = runtime::inspect(&runtime, &path.display().to_string(), &bytes)?;
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report).unwrap_or_default())?,
        Format::Text => {
            writeln!(out, "component: {}", report.path)?;
            writeln!(out, "sha256:    {}", report.sha256)?;
            writeln!(
                out,
                "contract:  {}",
                report.contract.as_deref().unwrap_or("none (exports no stratbox:strategy interface)")
            )?;
            writeln!(out, "imports:")?;
            for import in &report.imports {
                writeln!(out, "  {import}")?;
            }
            writeln!(out, "exports:")?;
            for export in &report.exports {
                writeln!(out, "  {export}")?;
            }
            if let Some(info) = &report.info {
                writeln!(out, "plugin:    {} {} — {}", info.name, info.version, info.description)?;
                for p in &info.params {
                    writeln!(out, "  param {} ({}, default {}): {}", p.key, p.kind, p.default, p.description)?;
                }
            }
            match &report.problem {
                None => writeln!(out, "satisfies stratbox:strategy@{}: yes", runtime::CONTRACT_VERSION)?,
                Some(problem) => {
                    writeln!(out, "satisfies stratbox:strategy@{}: no — {problem}", runtime::CONTRACT_VERSION)?
                }
            }
        }
    }
    Ok(if report.satisfies_contract { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Listens for Ctrl-C and SIGTERM from now on, and resolves on the first.
/// A second one exits the process at once, with status 130: safe, since
/// every change the host makes is a committed SQLite transaction and the
/// next start carries on from there.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("stopping: draining the engines (a second Ctrl-C or SIGTERM exits at once)");
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            eprintln!("stratbox: second signal, exiting now");
            std::process::exit(130);
        });
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

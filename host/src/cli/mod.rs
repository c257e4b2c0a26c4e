//! The command line: argument parsing and one function per command.

use std::hash::BuildHasher;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod backtest;
mod data;

pub use self::backtest::{BarsRun, SweepArgs};
pub use self::data::{DataCommand, DownloadArgs};

use crate::bench::{self, BenchError};
use crate::config::{Config, ConfigError};
use crate::engine::{EngineError, LiveError, RunOptions};
use crate::feed::FeedError;
use crate::runtime::{self, Runtime, RuntimeError};
use crate::scaffold::{Lang, ScaffoldError};

#[derive(Debug, Parser)]
#[command(name = "stratbox", version, about = "A host for sandboxed WebAssembly trading strategies")]
pub struct Cli {
    /// How logs on stderr are written: for people (coloured on a
    /// terminal only) or one JSON object a line, for machines.
    #[arg(long, global = true, value_enum, env = "STRATBOX_LOG_FORMAT", default_value_t)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
        /// Also writes a report: `out.html` (charts, statistics and trades
        /// in one page) or `out.svg` (the charts).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Backtests every combination of a parameter grid (on every core) and
    /// prints the best; `sweep merge` joins the tables of a sharded sweep.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Sweep {
        #[command(subcommand)]
        merge: Option<SweepCommand>,
        #[command(flatten)]
        sweep: SweepArgs,
    },
    /// Bar files from the venues, for backtests.
    Data {
        #[command(subcommand)]
        command: DataCommand,
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
        /// `alpaca`, `binance`, `kalshi` or `ibkr`.
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
    if crate::venues::Venue::from_name(&venue).is_none() {
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
    #[error("unknown venue `{venue}`: expected one of {}", crate::venues::Venue::names())]
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
    #[error(transparent)]
    History(#[from] Box<crate::history::HistoryError>),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error("cannot set up the HTTP client")]
    Http(#[source] reqwest::Error),
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
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => {
            use std::io::IsTerminal as _;
            logs.with_ansi(std::io::stderr().is_terminal()).init();
        }
        LogFormat::Json => logs.json().init(),
    }

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
        Command::Backtest { strategy, run, batch, config, report } => {
            backtest::backtest(&strategy, &run, batch as usize, config, report.as_deref(), out)
        }
        Command::Sweep { merge: Some(SweepCommand::Merge { tables, out: path, sort_by, top }), .. } => {
            backtest::merge_sweeps(&tables, &path, sort_by, top, out)
        }
        Command::Sweep { merge: None, sweep } => backtest::sweep(sweep, out),
        Command::Data { command } => data::data(command, out),
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

//! The commands that run a strategy over bar files: `backtest`, `sweep`
//! (and `sweep merge`), and the bar-file arguments they share with
//! `plugin check`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliError, Format, parse_param};
use crate::broker::PaperBroker;
use crate::config::{BrokerConfig, Config, RuntimeSection};
use crate::engine::Engine;
use crate::feed::{CsvLimits, FeedError};
use crate::risk::RiskLimits;
use crate::runtime::{self, Clock, Runtime};

/// A strategy run over a CSV of bars: what `backtest` and `plugin check`
/// share.
#[derive(Debug, clap::Args)]
pub struct BarsRun {
    /// CSV (or Parquet: `.parquet`, `.pq`) with a time column and open,
    /// high, low, close and volume; or a folder of them. Repeatable: the
    /// symbols' bars merge in time order and the strategy sees them all.
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
    pub(super) params: Vec<(String, String)>,
    #[arg(long, value_enum, default_value_t)]
    pub(super) format: Format,
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
                    .filter(|p| {
                        p.is_file()
                            && (p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
                                || crate::feed::is_parquet(p))
                    })
                    .collect();
                inside.sort();
                if inside.is_empty() {
                    let message = format!("{} holds no .csv or .parquet file", path.display());
                    return Err(FeedError::Config { message });
                }
                files.extend(inside);
            } else {
                files.push(path.clone());
            }
        }
        Ok(files)
    }

    /// Each file and its symbol: the one `--symbol` names, or the file's
    /// name in capitals; one symbol per file.
    fn sources(&self) -> Result<Vec<(PathBuf, String)>, FeedError> {
        let files = self.files()?;
        if self.symbol.is_some() && files.len() > 1 {
            let message = "--symbol names the one file's symbol; with several, each file's name is its symbol";
            return Err(FeedError::Config { message: message.into() });
        }
        let mut sources: Vec<(PathBuf, String)> = Vec::new();
        for file in files {
            let symbol = self.symbol.clone().unwrap_or_else(|| {
                file.file_stem().map_or_else(|| "UNKNOWN".into(), |s| s.to_string_lossy().to_uppercase())
            });
            if sources.iter().any(|(_, s)| *s == symbol) {
                let message = format!("two files hold symbol {symbol}: give each symbol one file");
                return Err(FeedError::Config { message: crate::runtime::bounded(&message) });
            }
            sources.push((file, symbol));
        }
        Ok(sources)
    }

    fn time(&self) -> Result<crate::feed::TimeSpec, FeedError> {
        Ok(crate::feed::TimeSpec::new(self.time_format.as_deref(), self.tz.as_deref())?)
    }

    /// The bars of every file, each under its symbol, merged in time order.
    pub(super) fn bars(&self) -> Result<Vec<crate::bar::Bar>, FeedError> {
        let time = self.time()?;
        let mut series = Vec::new();
        for (file, symbol) in self.sources()? {
            series.push(crate::feed::load_bars(&file, &symbol, CsvLimits::default(), &time)?);
        }
        Ok(crate::feed::merge(series))
    }

    /// The same bars, streamed: each file parsed on its own thread a few
    /// chunks ahead, so memory stays bounded whatever the files' size.
    fn stream(&self) -> Result<crate::feed::MergedStream, FeedError> {
        let time = self.time()?;
        let streams = self
            .sources()?
            .iter()
            .map(|(file, symbol)| {
                crate::feed::stream_bars(file, symbol, CsvLimits::default(), &time, STREAM_CHUNK, STREAM_AHEAD)
            })
            .collect();
        Ok(crate::feed::MergedStream::new(streams))
    }
}

/// Bars per chunk a reader thread hands over, and chunks it may be ahead:
/// about 16,384 bars (a few MiB) in flight per file.
const STREAM_CHUNK: usize = 4096;
const STREAM_AHEAD: usize = 4;

/// `stratbox sweep`'s arguments (without `merge`).
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
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
}

/// `stratbox sweep`: every combination of the grid, the best printed.
pub(super) fn sweep(args: SweepArgs, out: &mut impl Write) -> Result<ExitCode, CliError> {
    let SweepArgs { strategy, run, grid, jobs, shard, sort_by, out: path, top, batch, config } = args;
    let strategy = strategy.unwrap_or_default();
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(1, 256);
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

/// `stratbox sweep merge`: shards' tables joined into the whole grid's.
pub(super) fn merge_sweeps(
    tables: &[PathBuf],
    path: &std::path::Path,
    sort_by: crate::sweep::Metric,
    top: usize,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    let mut read = Vec::new();
    for table in tables {
        let origin = table.display().to_string();
        let file = std::fs::File::open(table).map_err(|source| CliError::File { path: origin.clone(), source })?;
        let (keys, rows) = crate::sweep::read_table(file, &origin)?;
        read.push((origin, keys, rows));
    }
    let (keys, rows) = crate::sweep::merge(read, sort_by)?;
    write_sweep(&rows, &keys, Some(path), top, out)
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

/// A progress bar with bars per second, drawn on a terminal once a run
/// has taken a second; nothing otherwise (or for JSON output).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
}

impl Progress {
    fn start(wanted: bool) -> Self {
        use std::io::IsTerminal as _;
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden());
            let style = indicatif::ProgressStyle::with_template("{spinner} {human_pos} bars, {per_sec}, {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            bar.set_style(style);
            bar
        });
        Self { bar, started: std::time::Instant::now() }
    }

    fn advance(&self, bars: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(bars as u64);
            if bar.is_hidden() && self.started.elapsed() >= std::time::Duration::from_secs(1) {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
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

pub(super) fn backtest(
    strategy: &str,
    run: &BarsRun,
    batch: usize,
    config: Option<PathBuf>,
    report_to: Option<&std::path::Path>,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    if let Some(path) = report_to
        && !path.extension().is_some_and(|e| ["html", "htm", "svg"].iter().any(|k| e.eq_ignore_ascii_case(k)))
    {
        return Err(crate::report::ReportError::Kind { path: path.display().to_string() }.into());
    }
    let (risk, broker, runtime_section, budget) = backtest_settings(config)?;
    // A backtest must be reproducible: a fault ends it instead of restarting.
    let runtime = Runtime::new(runtime::RuntimeConfig { max_restarts: 0, ..runtime_section.to_runtime(budget) })?;
    let plugin = runtime.load_named(strategy)?;
    let params = &run.params;
    plugin.resolve_params(params)?;
    // Streamed: parsing runs ahead on other threads and memory stays
    // bounded; a bad row still ends the run with an error and no report.
    let mut stream = run.stream()?;
    let mut batch_now = stream.next_batch(batch)?;
    let Some(first) = batch_now.first() else {
        return Err(FeedError::Empty {
            path: run.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        }
        .into());
    };
    let symbol = first.symbol.to_string();
    let instance = runtime.instantiate(&plugin, params, Clock::virtual_at(first.time))?;
    let BrokerConfig { starting_cash, commission, .. } = broker;
    let mut engine = Engine::new(Box::new(instance), Box::new(PaperBroker::new(commission)), risk, starting_cash);
    if report_to.is_some() {
        engine.record_curve();
    }
    let progress = Progress::start(run.format == Format::Text);
    while !batch_now.is_empty() {
        engine.on_bars(&batch_now)?;
        progress.advance(batch_now.len());
        batch_now = stream.next_batch(batch)?;
    }
    progress.finish();
    let mut report = engine.report(&symbol);
    if let (Some(path), Some(curve)) = (report_to, engine.curve()) {
        report.statistics = Some(crate::report::write_report(path, &report, curve)?);
    }
    match run.format {
        Format::Json => writeln!(out, "{}", report.to_json())?,
        Format::Text => write!(out, "{}", report.to_text())?,
    }
    Ok(ExitCode::SUCCESS)
}

//! `stratbox data ...`: bar files from the venues.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliError, Format};
use crate::history::{self, DownloadRequest, Venue};

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Downloads past bars into one CSV per symbol that `backtest` reads;
    /// resumes where an earlier run stopped, and changes nothing when run
    /// again.
    Download(DownloadArgs),
}

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// `alpaca`, `binance` or `kalshi`.
    #[arg(long, value_parser = venue)]
    venue: Venue,
    /// Comma-separated, e.g. `AAPL,MSFT`; Kalshi takes tickers, or
    /// `SERIES:TICKER` when the series is not the ticker's first part.
    #[arg(long, value_delimiter = ',', required = true)]
    symbols: Vec<String>,
    /// `1m`, `5m`, `15m`, `1h` or `1d`.
    #[arg(long, default_value = "1m")]
    timeframe: String,
    /// The first bar's earliest open time: a date (UTC), a date and time,
    /// RFC 3339 or epoch time.
    #[arg(long)]
    from: String,
    /// Bars opening before this (default: up to the last closed bar).
    #[arg(long)]
    to: Option<String>,
    /// The folder for the files and their manifest.
    #[arg(long)]
    out: PathBuf,
    /// The venue's market-data API (default: the venue's public one).
    #[arg(long)]
    url: Option<String>,
    /// Alpaca: `iex` (free) or `sip`.
    #[arg(long, default_value = "iex")]
    alpaca_feed: String,
    /// Requests a minute (default: inside the venue's published limit).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    requests_per_minute: Option<u32>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

fn venue(name: &str) -> Result<Venue, String> {
    Venue::from_name(name).ok_or_else(|| format!("expected one of {}", Venue::names()))
}

pub(super) fn data(command: DataCommand, out: &mut impl Write) -> Result<ExitCode, CliError> {
    let DataCommand::Download(args) = command;
    let request = DownloadRequest {
        venue: args.venue,
        symbols: args.symbols,
        timeframe: args.timeframe,
        from: history::parse_time(&args.from).map_err(Box::new)?,
        to: args.to.as_deref().map(history::parse_time).transpose().map_err(Box::new)?,
        out: args.out,
        base_url: args.url,
        alpaca_feed: args.alpaca_feed,
        requests_per_minute: args.requests_per_minute,
        progress: std::io::stderr().is_terminal(),
    };
    let client =
        reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().map_err(CliError::Http)?;
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(CliError::Tokio)?;
    let reports = tokio.block_on(history::download(&request, &client)).map_err(Box::new)?;
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&reports).unwrap_or_default())?,
        Format::Text => {
            for r in &reports {
                let range = match (&r.first, &r.last) {
                    (Some(first), Some(last)) => format!("{first} .. {last}"),
                    _ => "no bars".into(),
                };
                writeln!(
                    out,
                    "{}: {} new bars; holds {range}; complete through {}",
                    r.file, r.added, r.complete_through
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! Historical bars: `stratbox data download` fetches a venue's past bars
//! into one CSV per symbol that `backtest` reads as is.
//!
//! It asks through the live feeds' own clients ([`BarSource`]), a window
//! of bars at a time. Each window is appended and synced, then recorded in
//! the folder's manifest, so a run stopped at any point (a kill included)
//! resumes where it stopped and running it again changes nothing. A
//! throttled request waits as long as the venue's Retry-After asks; other
//! passing failures are retried with backoff.

mod file;
mod manifest;

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use self::file::BarFile;
use self::manifest::{Entry, Manifest};
use crate::bar::{Bar, Millis, format_time, now_ms};
use crate::feed::{BarSource, FeedError};
use crate::rate_limit::RateLimiter;
use crate::venue::VenueError;
pub use crate::venues::Venue;
use crate::venues::{HistorySetup, SetupError};

/// Failures in a row before the download gives up.
const MAX_RETRIES: u32 = 8;
/// The longest wait a Retry-After may impose before the download gives up.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// What to download.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    pub venue: Venue,
    pub symbols: Vec<String>,
    /// `1m`, `5m`, `15m`, `1h` or `1d` (each venue's own spelling works too).
    pub timeframe: String,
    pub from: Millis,
    /// Exclusive; the last closed bar when `None`.
    pub to: Option<Millis>,
    pub out: PathBuf,
    /// The venue's market-data API; each venue has a default.
    pub base_url: Option<String>,
    /// Alpaca: `iex` or `sip`.
    pub alpaca_feed: String,
    pub requests_per_minute: Option<u32>,
    /// Draw a progress bar on a terminal.
    pub progress: bool,
}

/// What a download did to one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    pub symbol: String,
    /// Bars this run appended.
    pub added: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    /// Every bar opening before this is in the file.
    pub complete_through: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot use {path}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "{path} was not written by `stratbox data download` (its header or rows differ): move it aside or choose another --out"
    )]
    Foreign { path: String },
    #[error("{path} is not a download manifest")]
    Manifest { path: String, source: serde_json::Error },
    #[error("{file} holds {held} bars; this download asks for {asked}: choose another --out")]
    Mismatch { file: String, held: String, asked: String },
    #[error("{file} starts at {starts}; bars from {from} need another --out, since files only grow at their end")]
    Earlier { file: String, starts: String, from: String },
    #[error("invalid download: {message}")]
    Request { message: String },
    #[error("{symbol}: gave up after {tries} tries")]
    GaveUp { symbol: String, tries: u32, source: VenueError },
    #[error("{symbol}")]
    Feed { symbol: String, source: FeedError },
    #[error("{symbol}")]
    Setup { symbol: String, source: Box<SetupError> },
}

/// A bar length as this command spells it, and as each venue does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timeframe {
    minutes: u32,
}

impl Timeframe {
    fn parse(text: &str) -> Result<Self, HistoryError> {
        let minutes = match text {
            "1m" | "1Min" | "1min" => 1,
            "5m" | "5Min" | "5min" => 5,
            "15m" | "15Min" | "15min" => 15,
            "1h" | "1Hour" | "1hour" => 60,
            "1d" | "1Day" | "1day" => 1440,
            _ => {
                let message =
                    format!("timeframe `{}` is not one of 1m, 5m, 15m, 1h, 1d", crate::runtime::bounded(text));
                return Err(HistoryError::Request { message });
            }
        };
        Ok(Self { minutes })
    }

    fn label(self) -> &'static str {
        match self.minutes {
            1 => "1m",
            5 => "5m",
            15 => "15m",
            60 => "1h",
            _ => "1d",
        }
    }

    fn millis(self) -> i64 {
        i64::from(self.minutes) * 60_000
    }
}

/// One symbol's source, built with the live feed's client for the venue.
fn source_for(
    request: &DownloadRequest,
    timeframe: Timeframe,
    symbol: &str,
    client: &reqwest::Client,
) -> Result<Box<dyn BarSource>, SetupError> {
    let setup = HistorySetup {
        client,
        base_url: request.base_url.as_deref(),
        symbol,
        minutes: timeframe.minutes,
        alpaca_feed: &request.alpaca_feed,
    };
    request.venue.history(&setup)
}

/// The file a symbol's bars go to, under the name `backtest` reads back as
/// the symbol; refused if it could leave the folder or hide.
fn file_name(symbol: &str) -> Result<String, HistoryError> {
    let name = symbol.rsplit(':').next().unwrap_or(symbol);
    let fine = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !fine {
        let message = format!(
            "symbol `{}` cannot name a file: use letters, digits, `.`, `_` and `-`",
            crate::runtime::bounded(symbol)
        );
        return Err(HistoryError::Request { message });
    }
    Ok(format!("{name}.csv"))
}

/// Downloads every symbol of `request` in turn, each into its own file.
pub async fn download(request: &DownloadRequest, client: &reqwest::Client) -> Result<Vec<FileReport>, HistoryError> {
    let timeframe = Timeframe::parse(&request.timeframe)?;
    if request.symbols.is_empty() {
        return Err(HistoryError::Request { message: "name at least one symbol".into() });
    }
    let mut names = Vec::new();
    for symbol in &request.symbols {
        let name = file_name(symbol)?;
        if names.contains(&name) {
            return Err(HistoryError::Request { message: format!("{name} is named twice") });
        }
        names.push(name);
    }
    let period = timeframe.millis();
    // A bar opening at or after this has not closed yet.
    let open_from = now_ms() - period + 1;
    let to = request.to.map_or(open_from, |to| to.min(open_from));
    if request.from >= to {
        let message = format!("--from {} is not before --to {}", format_time(request.from), format_time(to));
        return Err(HistoryError::Request { message });
    }
    std::fs::create_dir_all(&request.out)
        .map_err(|source| HistoryError::Io { path: request.out.display().to_string(), source })?;
    let mut manifest = Manifest::load(&request.out)?;
    let per_minute = request.requests_per_minute.unwrap_or(request.venue.history_limits().per_minute);
    let limiter = RateLimiter::new(per_minute);
    let bar = progress_bar(request.progress);
    let mut reports = Vec::new();
    for (symbol, name) in request.symbols.iter().zip(&names) {
        let source = source_for(request, timeframe, symbol, client)
            .map_err(|source| HistoryError::Setup { symbol: symbol.clone(), source: Box::new(source) })?;
        let job = Job { request, timeframe, symbol, name, to, limiter: &limiter, progress: &bar };
        reports.push(job.run(source.as_ref(), &mut manifest).await?);
    }
    bar.finish_and_clear();
    Ok(reports)
}

fn progress_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template("{msg:24} [{bar:32}] {percent:>3}% {pos}/{len} bars, {eta} left")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// One symbol's download.
struct Job<'a> {
    request: &'a DownloadRequest,
    timeframe: Timeframe,
    symbol: &'a str,
    name: &'a str,
    to: Millis,
    limiter: &'a RateLimiter,
    progress: &'a ProgressBar,
}

impl Job<'_> {
    /// Where this symbol's file resumes, after checking it holds what is asked.
    fn resume_point(&self, manifest: &mut Manifest, file: &BarFile) -> Result<Millis, HistoryError> {
        let path = self.request.out.join(self.name).display().to_string();
        let asked = format!("{} {}", self.request.venue.name(), self.timeframe.label());
        let Some(entry) = manifest.entry(self.name).cloned() else {
            if file.last().is_some() {
                return Err(HistoryError::Foreign { path });
            }
            return Ok(self.request.from);
        };
        let held = format!("{} {}", entry.venue, entry.timeframe);
        if held != asked || entry.symbol != self.symbol {
            return Err(HistoryError::Mismatch { file: path, held: format!("{} {held}", entry.symbol), asked });
        }
        if self.request.from < entry.from {
            let (starts, from) = (format_time(entry.from), format_time(self.request.from));
            return Err(HistoryError::Earlier { file: path, starts, from });
        }
        // From where the record or the file ends, whichever is later: a
        // window may have been written whose record was not.
        Ok(file.last().map_or(entry.through, |last| entry.through.max(last + 1)))
    }

    async fn run(&self, source: &dyn BarSource, manifest: &mut Manifest) -> Result<FileReport, HistoryError> {
        let path = self.request.out.join(self.name);
        let mut file = BarFile::open(&path)?;
        let start = self.resume_point(manifest, &file)?;
        let first_from = manifest.entry(self.name).map_or(self.request.from, |e| e.from);
        let entry = |through| Entry {
            venue: self.request.venue.name().into(),
            symbol: self.symbol.to_string(),
            timeframe: self.timeframe.label().into(),
            from: first_from,
            through,
        };
        if manifest.entry(self.name).is_none() {
            manifest.record(self.name, entry(start))?;
        }
        let period = self.timeframe.millis();
        self.progress.set_message(self.symbol.to_string());
        self.progress.inc_length(((self.to - start).max(0) / period) as u64);
        let mut added = 0;
        let mut from = start;
        while from < self.to {
            let end = from.saturating_add((self.request.venue.history_limits().page - 1) * period).min(self.to);
            let mut bars = self.fetch(source, from, end).await?;
            let after = file.last();
            bars.retain(|b| b.time >= from && b.time < end && after.is_none_or(|last| b.time > last));
            bars.sort_by_key(|b| b.time);
            bars.dedup_by_key(|b| b.time);
            file.append(&bars)?;
            manifest.record(self.name, entry(end))?;
            added += bars.len() as u64;
            self.progress.inc(((end - from) / period) as u64);
            from = end;
        }
        let through = manifest.entry(self.name).map_or(start, |e| e.through);
        Ok(FileReport {
            file: path.display().to_string(),
            symbol: self.symbol.to_string(),
            added,
            first: file.first().map(format_time),
            last: file.last().map(format_time),
            complete_through: format_time(through),
        })
    }

    /// One window's bars, waiting out throttles and passing failures.
    async fn fetch(&self, source: &dyn BarSource, from: Millis, end: Millis) -> Result<Vec<Bar>, HistoryError> {
        let mut tries = 0;
        loop {
            self.limiter.acquire().await;
            tries += 1;
            // Sources keep the bars closed by the time given; one period
            // more takes in every bar opening before `end`, wherever the
            // venue's bars fall (Alpaca's days open at 04:00 or 05:00 UTC).
            let error = match source.fetch(from, end.saturating_add(self.timeframe.millis())).await {
                Ok(bars) => return Ok(bars),
                // A read: even an unknown outcome changed nothing at the venue.
                Err(FeedError::Venue(error)) if error.is_retryable() || matches!(error, VenueError::Unknown { .. }) => {
                    error
                }
                Err(source) => return Err(HistoryError::Feed { symbol: self.symbol.to_string(), source }),
            };
            let wait = match &error {
                VenueError::Throttled { retry_after: Some(wait), .. } => *wait,
                _ => Duration::from_millis(250 << tries.min(7)),
            };
            if tries > MAX_RETRIES || wait > MAX_WAIT {
                return Err(HistoryError::GaveUp { symbol: self.symbol.to_string(), tries, source: error });
            }
            tracing::warn!(symbol = self.symbol, ?wait, %error, "waiting before asking again");
            self.progress.set_message(format!("{}: waiting {:.0?}", self.symbol, wait));
            tokio::time::sleep(wait).await;
            self.progress.set_message(self.symbol.to_string());
        }
    }
}

/// `text` (a date, a date and time, RFC 3339 or epoch time) as UTC millis.
pub fn parse_time(text: &str) -> Result<Millis, HistoryError> {
    crate::feed::parse_instant(text).map_err(|message| HistoryError::Request { message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeframes_in_either_spelling_and_nothing_else() {
        assert_eq!(Timeframe::parse("1Min").unwrap(), Timeframe::parse("1m").unwrap());
        assert_eq!(Timeframe::parse("1Day").unwrap().millis(), 86_400_000);
        assert!(Timeframe::parse("7m").is_err());
    }

    #[test]
    fn a_symbol_never_names_a_file_outside_the_folder() {
        assert_eq!(file_name("BRK.B").unwrap(), "BRK.B.csv");
        assert_eq!(file_name("KXHIGHNY:KXHIGHNY-24JAN01-T60").unwrap(), "KXHIGHNY-24JAN01-T60.csv");
        for bad in ["../etc/passwd", "a/b", ".hidden", "", "x\ny", &"A".repeat(65)] {
            assert!(file_name(bad).is_err(), "{bad:?}");
        }
    }
}

//! Market data: where bars come from.

mod csv;
mod replay;

pub use self::csv::{CsvLimits, load_csv, parse_csv};
pub use self::replay::ReplayFeed;

use crate::bar::Bar;

/// Why market data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read {path}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is empty: expected a header `Date,Open,High,Low,Close,Volume` and at least one row")]
    Empty { path: String },
    #[error("{path} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}: header lacks column `{column}` (found: {found})")]
    Header { path: String, column: &'static str, found: String },
    #[error("{path}, line {line}: {message}")]
    Row { path: String, line: u64, message: String },
}

/// A source of bars for the live engine, polled until it is exhausted.
#[async_trait::async_trait]
pub trait MarketData: Send {
    /// The next bars that closed, in time order; `None` once the feed ends.
    async fn next_batch(&mut self) -> Result<Option<Vec<Bar>>, FeedError>;
}

/// Daily bars shipped in the binary (public domain; see `data/README.md`).
pub const BUNDLED_DATA: &[(&str, &str)] = &[
    ("AAPL", include_str!("../../../data/AAPL.csv")),
    ("GOOG", include_str!("../../../data/GOOG.csv")),
    ("IBM", include_str!("../../../data/IBM.csv")),
    ("MSFT", include_str!("../../../data/MSFT.csv")),
];

/// Loads `bundled:SYMBOL` from [`BUNDLED_DATA`] or a CSV path, as `symbol`.
pub fn load_source(source: &str, symbol: &str, limits: CsvLimits) -> Result<Vec<Bar>, FeedError> {
    match source.strip_prefix("bundled:") {
        Some(name) => {
            let (_, text) =
                BUNDLED_DATA.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).ok_or_else(|| FeedError::Io {
                    path: source.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such bundled data set (bundled: AAPL, GOOG, IBM, MSFT)",
                    ),
                })?;
            parse_csv(text.as_bytes(), source, symbol)
        }
        None => load_csv(std::path::Path::new(source), symbol, limits),
    }
}

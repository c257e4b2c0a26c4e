//! Market data as the host holds it.

use std::sync::Arc;

use rust_decimal::Decimal;

/// Milliseconds since the Unix epoch, UTC; the contract's `timestamp`.
pub type Millis = i64;

/// One OHLCV bar of one instrument.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Shared so a million bars of one symbol cost one allocation.
    pub symbol: Arc<str>,
    /// The bar's open time.
    pub time: Millis,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// Formats a timestamp as RFC 3339 in UTC, e.g. `2000-03-01T00:00:00Z`.
pub fn format_time(time: Millis) -> String {
    let nanos = i128::from(time) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{time}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_time(951_868_800_000), "2000-03-01T00:00:00Z");
        assert_eq!(format_time(1_500), "1970-01-01T00:00:01.5Z");
    }
}

//! Binance spot: klines (polled) and orders, signed with HMAC-SHA256, with
//! each symbol's trading filters checked before an order is sent.

mod filters;
mod klines;
mod orders;

pub use self::klines::{BinanceKlines, BinanceKlinesConfig, parse_klines};
pub use self::orders::{BinanceBroker, BinanceCredentials, FILTER_TTL, LotRule, NotionalRule, SymbolFilters, sign};

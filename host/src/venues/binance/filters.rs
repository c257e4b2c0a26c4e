//! Binance symbol filters (`exchangeInfo`): the rules an order must meet,
//! applied before sending so an order the venue would refuse is refused
//! here with the reason.

use std::time::Duration;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::order::Side;
use crate::venue::{VenueError, excerpt, json};

const VENUE: &str = "binance";

/// A quantity rule: `LOT_SIZE`, or `MARKET_LOT_SIZE` for market orders.
/// A valid quantity is within `[min, max]` and a whole number of steps
/// above `min`: `(qty - min) % step == 0`. A zero `max` or `step` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotRule {
    pub min: Decimal,
    pub max: Decimal,
    pub step: Decimal,
}

impl LotRule {
    /// Rounds down to a whole number of steps above `min`.
    fn round_down(&self, qty: Decimal) -> Decimal {
        if self.step.is_zero() || qty < self.min {
            return qty;
        }
        // Checked: the step comes from the venue and may be absurdly small.
        (qty - self.min)
            .checked_div(self.step)
            .and_then(|steps| steps.round_dp_with_strategy(0, RoundingStrategy::ToZero).checked_mul(self.step))
            .and_then(|v| v.checked_add(self.min))
            .map_or(qty, |v| v.normalize())
    }

    fn check(&self, name: &str, qty: Decimal) -> Result<(), String> {
        if qty < self.min {
            return Err(format!("quantity {qty} is below the {name} minimum {}", self.min.normalize()));
        }
        if !self.max.is_zero() && qty > self.max {
            return Err(format!("quantity {qty} is above the {name} maximum {}", self.max.normalize()));
        }
        if !self.step.is_zero() && (qty - self.min).checked_rem(self.step).is_none_or(|r| !r.is_zero()) {
            return Err(format!("quantity {qty} is not a whole number of {name} steps of {}", self.step.normalize()));
        }
        Ok(())
    }
}

/// The order-value rule of `NOTIONAL` (or the older `MIN_NOTIONAL`):
/// price × quantity within bounds, checked for market orders only where
/// the filter says so, at the recent average price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotionalRule {
    pub min: Decimal,
    pub max: Option<Decimal>,
    pub min_applies_to_market: bool,
    pub max_applies_to_market: bool,
}

/// A symbol's trading rules, from the filters `exchangeInfo` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolFilters {
    /// `PRICE_FILTER`: `[min_price, max_price]`, a whole number of ticks
    /// (`price % tickSize == 0`, as the spot filter documentation puts it;
    /// unlike lots, ticks are not counted from the minimum).
    pub min_price: Decimal,
    pub max_price: Decimal,
    pub tick_size: Decimal,
    pub lot: LotRule,
    pub market_lot: Option<LotRule>,
    pub notional: Option<NotionalRule>,
}

impl SymbolFilters {
    /// Rounds a quantity down to the lot rules that apply (both for a
    /// market order), and a limit price to the tick (see [`Self::round_price`]).
    pub fn round(&self, side: Side, qty: Decimal, price: Option<Decimal>) -> (Decimal, Option<Decimal>) {
        let mut qty = self.lot.round_down(qty);
        if let (None, Some(market)) = (price, &self.market_lot) {
            qty = market.round_down(qty);
        }
        (qty, price.map(|p| self.round_price(side, p)))
    }

    /// Rounds a price to the tick in the direction that never worsens a
    /// limit (buys down, sells up); a stop rounded so never triggers later
    /// than asked.
    pub fn round_price(&self, side: Side, price: Decimal) -> Decimal {
        let strategy = match side {
            Side::Buy => RoundingStrategy::ToNegativeInfinity,
            Side::Sell => RoundingStrategy::ToPositiveInfinity,
        };
        if self.tick_size.is_zero() {
            return price;
        }
        price
            .checked_div(self.tick_size)
            .and_then(|ticks| ticks.round_dp_with_strategy(0, strategy).checked_mul(self.tick_size))
            .map_or(price, |v| v.normalize())
    }

    /// Why `PRICE_FILTER` refuses a price (`what`: "price", "stop price"):
    /// it applies to an order's price and its stop price alike.
    pub fn check_price(&self, what: &str, p: Decimal) -> Result<(), String> {
        if !self.min_price.is_zero() && p < self.min_price {
            return Err(format!("{what} {p} is below the minimum {}", self.min_price.normalize()));
        }
        if !self.max_price.is_zero() && p > self.max_price {
            return Err(format!("{what} {p} is above the maximum {}", self.max_price.normalize()));
        }
        if !self.tick_size.is_zero() && p.checked_rem(self.tick_size).is_none_or(|r| !r.is_zero()) {
            return Err(format!("{what} {p} is not a whole number of ticks of {}", self.tick_size.normalize()));
        }
        Ok(())
    }

    /// Why the venue would refuse an order of `qty` at `price` (`None`: a
    /// market order, whose value is taken at `market_price`), if it would.
    pub fn check(&self, qty: Decimal, price: Option<Decimal>, market_price: Option<Decimal>) -> Result<(), String> {
        if qty <= Decimal::ZERO {
            return Err(format!("quantity {qty} is not positive"));
        }
        self.lot.check("LOT_SIZE", qty)?;
        if let (None, Some(market)) = (price, &self.market_lot) {
            market.check("MARKET_LOT_SIZE", qty)?;
        }
        if let Some(p) = price {
            self.check_price("price", p)?;
        }
        let Some(rule) = &self.notional else { return Ok(()) };
        let (check_min, check_max) = match price {
            Some(_) => (true, true),
            None => (rule.min_applies_to_market, rule.max_applies_to_market),
        };
        let Some(value) = price.or(market_price).map(|p| p.checked_mul(qty)) else { return Ok(()) };
        let value = value.ok_or_else(|| format!("the value of {qty} at {price:?} is out of range"))?;
        if check_min && value < rule.min {
            return Err(format!(
                "order value {} is below the minimum notional {}",
                value.normalize(),
                rule.min.normalize()
            ));
        }
        if let (true, Some(max)) = (check_max, rule.max)
            && !max.is_zero()
            && value > max
        {
            return Err(format!("order value {} is above the maximum notional {}", value.normalize(), max.normalize()));
        }
        Ok(())
    }

    /// Whether checking a market order needs the symbol's average price.
    pub(super) fn needs_market_price(&self) -> bool {
        self.notional.is_some_and(|n| n.min_applies_to_market || n.max_applies_to_market)
    }
}

/// How long fetched filters are trusted before they are fetched again.
pub const FILTER_TTL: Duration = Duration::from_secs(3600);

fn malformed(endpoint: &str, body: &[u8], message: String) -> VenueError {
    VenueError::Malformed { venue: VENUE, endpoint: endpoint.into(), body: excerpt(body), message }
}

fn decimal(endpoint: &str, body: &[u8], what: &str, text: &str) -> Result<Decimal, VenueError> {
    crate::venue::decimal(VENUE, endpoint, body, what, text)
}

/// Reads `symbol`'s filters from an `exchangeInfo` answer. `PRICE_FILTER`
/// and `LOT_SIZE` must be there; `MARKET_LOT_SIZE` and `NOTIONAL` (or
/// `MIN_NOTIONAL`) apply when present. A flag that is missing counts as set.
pub(super) fn parse_filters(endpoint: &str, body: &[u8], symbol: &str) -> Result<SymbolFilters, VenueError> {
    let info: serde_json::Value = json(VENUE, endpoint, body)?;
    let entry = info["symbols"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["symbol"] == symbol))
        .ok_or_else(|| malformed(endpoint, body, format!("no entry for {symbol}")))?;
    let filters =
        entry["filters"].as_array().ok_or_else(|| malformed(endpoint, body, format!("no filters for {symbol}")))?;
    let filter = |kind: &str| filters.iter().find(|f| f["filterType"] == kind);
    let field = |f: &serde_json::Value, kind: &str, key: &str| -> Result<Decimal, VenueError> {
        let text = f[key].as_str().ok_or_else(|| malformed(endpoint, body, format!("{kind}.{key} missing")))?;
        let value = decimal(endpoint, body, key, text)?;
        if value.is_sign_negative() {
            return Err(malformed(endpoint, body, format!("{kind}.{key} is negative")));
        }
        Ok(value)
    };
    let lot = |kind: &str, f: &serde_json::Value| -> Result<LotRule, VenueError> {
        Ok(LotRule {
            min: field(f, kind, "minQty")?,
            max: field(f, kind, "maxQty")?,
            step: field(f, kind, "stepSize")?,
        })
    };
    let missing = |kind: &str| malformed(endpoint, body, format!("{symbol} has no {kind} filter"));
    let price = filter("PRICE_FILTER").ok_or_else(|| missing("PRICE_FILTER"))?;
    let flag = |f: &serde_json::Value, key: &str| f[key].as_bool().unwrap_or(true);
    let notional = match (filter("NOTIONAL"), filter("MIN_NOTIONAL")) {
        (Some(f), _) => Some(NotionalRule {
            min: field(f, "NOTIONAL", "minNotional")?,
            max: Some(field(f, "NOTIONAL", "maxNotional")?),
            min_applies_to_market: flag(f, "applyMinToMarket"),
            max_applies_to_market: flag(f, "applyMaxToMarket"),
        }),
        (None, Some(f)) => Some(NotionalRule {
            min: field(f, "MIN_NOTIONAL", "minNotional")?,
            max: None,
            min_applies_to_market: flag(f, "applyToMarket"),
            max_applies_to_market: false,
        }),
        (None, None) => None,
    };
    Ok(SymbolFilters {
        min_price: field(price, "PRICE_FILTER", "minPrice")?,
        max_price: field(price, "PRICE_FILTER", "maxPrice")?,
        tick_size: field(price, "PRICE_FILTER", "tickSize")?,
        lot: lot("LOT_SIZE", filter("LOT_SIZE").ok_or_else(|| missing("LOT_SIZE"))?)?,
        market_lot: filter("MARKET_LOT_SIZE").map(|f| lot("MARKET_LOT_SIZE", f)).transpose()?,
        notional,
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn filters(min_qty: &str, step: &str) -> SymbolFilters {
        SymbolFilters {
            min_price: d("0.01"),
            max_price: d("1000"),
            tick_size: d("0.01"),
            lot: LotRule { min: d(min_qty), max: d("100"), step: d(step) },
            market_lot: Some(LotRule { min: d("0"), max: d("5"), step: d("0") }),
            notional: Some(NotionalRule {
                min: d("10"),
                max: Some(d("50000")),
                min_applies_to_market: true,
                max_applies_to_market: false,
            }),
        }
    }

    #[test]
    fn rounds_steps_from_the_minimum_and_prices_to_the_tick() {
        let f = filters("0.001", "0.001");
        assert_eq!(f.round(Side::Buy, d("1.23456"), Some(d("100.019"))), (d("1.234"), Some(d("100.01"))));
        assert_eq!(f.round(Side::Sell, d("0.5"), Some(d("100.011"))), (d("0.5"), Some(d("100.02"))));
        // Binance counts steps from minQty: (qty - minQty) % stepSize == 0.
        let offset = filters("0.0015", "0.001");
        assert_eq!(offset.round(Side::Buy, d("0.0123"), None).0, d("0.0115"));
        // Prices are whole ticks, whatever the minimum price.
        let odd_min = SymbolFilters { min_price: d("0.015"), ..f };
        assert_eq!(odd_min.round(Side::Buy, d("1"), Some(d("100.019"))).1, Some(d("100.01")));
        // Stops round the same way: a buy stop down, a sell stop up.
        assert_eq!(
            (f.round_price(Side::Buy, d("100.019")), f.round_price(Side::Sell, d("99.991"))),
            (d("100.01"), d("100"))
        );
        assert!(offset.lot.check("LOT_SIZE", d("0.0115")).is_ok());
        assert!(offset.lot.check("LOT_SIZE", d("0.012")).is_err());
    }

    #[test]
    fn hostile_filters_do_not_panic() {
        let tiny = Decimal::new(1, 28);
        let hostile = SymbolFilters {
            tick_size: tiny,
            lot: LotRule { min: Decimal::ZERO, max: Decimal::ZERO, step: tiny },
            ..filters("0.001", "0.001")
        };
        let (qty, price) = hostile.round(Side::Buy, Decimal::MAX, Some(Decimal::MAX));
        assert!(hostile.check(qty, price, None).is_err());
        assert!(hostile.check(d("2"), None, Some(Decimal::MAX)).is_err(), "an order value out of range is refused");
    }

    #[test]
    fn refuses_what_the_venue_would() {
        let f = filters("0.5", "0.1");
        assert!(f.check(d("0.4"), Some(d("100")), None).unwrap_err().contains("LOT_SIZE minimum"));
        assert!(f.check(d("101"), Some(d("100")), None).unwrap_err().contains("LOT_SIZE maximum"));
        assert!(f.check(d("6"), None, Some(d("100"))).unwrap_err().contains("MARKET_LOT_SIZE maximum"));
        assert!(f.check(d("0.5"), Some(d("10")), None).unwrap_err().contains("minimum notional"));
        assert!(f.check(d("0.5"), None, Some(d("10"))).unwrap_err().contains("minimum notional"));
        assert!(f.check(d("60"), Some(d("1000")), None).unwrap_err().contains("maximum notional"));
        assert!(f.check(d("1"), Some(d("100")), None).is_ok());
        assert!(f.check(d("0"), None, None).is_err());
        assert!(f.check_price("stop price", d("0.001")).unwrap_err().starts_with("stop price 0.001 is below"));
        assert!(f.check_price("stop price", d("100.005")).unwrap_err().contains("ticks"));
        assert!(f.check_price("stop price", d("100.01")).is_ok());
    }

    #[test]
    fn parses_filters_and_refuses_a_bad_answer() {
        let body = br#"{"symbols": [{"symbol": "BTCUSDT", "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "100000", "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.0015", "maxQty": "9000", "stepSize": "0.001"},
            {"filterType": "MIN_NOTIONAL", "minNotional": "5", "applyToMarket": false, "avgPriceMins": 5}]}]}"#;
        let f = parse_filters("/x", body, "BTCUSDT").unwrap();
        assert_eq!(
            (f.lot.min, f.market_lot, f.notional.map(|n| n.min_applies_to_market)),
            (d("0.0015"), None, Some(false))
        );
        assert!(parse_filters("/x", body, "ETHUSDT").is_err(), "another symbol's entry is not used");
        let bad = br#"{"symbols": [{"symbol": "B", "filters": [{"filterType": "LOT_SIZE", "minQty": "-1", "maxQty": "1", "stepSize": "x"}]}]}"#;
        assert!(parse_filters("/x", bad, "B").is_err());
    }
}

//! Contracts and bars: `/iserver/secdef/search` and `/iserver/marketdata/history`.

use super::*;

/// `/iserver/secdef/search`. The docs return "all matching records" as an
/// array and document no error for a symbol without any, so none is `[]`.
/// The conid comes as a string here (it is a number everywhere else).
pub(super) fn search(g: &Gateway, symbol: Option<&str>, sec_type: Option<&str>) -> Response {
    let Some(symbol) = symbol.filter(|s| !s.is_empty()) else { return error(400, "symbol is required") };
    if sec_type.is_some_and(|t| !["STK", "IND", "BOND"].contains(&t)) {
        return error(400, "secType must be one of STK, IND, BOND");
    }
    let found =
        g.contracts.iter().filter(|(s, _)| s.eq_ignore_ascii_case(symbol) && sec_type.is_none_or(|t| t == "STK"));
    let answers = found.map(|(s, conid)| {
        json!({"conid": conid.to_string(), "companyHeader": format!("{s} INC - NASDAQ"), "companyName": format!("{s} INC"),
            "symbol": s, "description": "NASDAQ", "restricted": null, "sections": [{"secType": "STK"}]})
    });
    json(200, Value::Array(answers.collect()))
}

/// A period or bar (`5min`, `1h`, `2d`, `1w`, `1m`, `1y`) in seconds, a
/// month taken as 30 days and a year as 365.
fn duration(text: &str) -> Option<(u32, &str, i64)> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (count, unit) = (text[..split].parse::<u32>().ok()?, &text[split..]);
    let seconds = match unit {
        "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "m" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return None,
    };
    (count > 0).then_some((count, unit, i64::from(count) * seconds))
}

/// `/iserver/marketdata/history`, with the documented period ranges
/// ({1-30}min, {1-8}h, {1-1000}d, {1-792}w, {1-182}m, {1-15}y), bar values
/// and "Step Size" table. The docs disagree on which of period and bar is
/// required (the reference says period, the campus page bar), so both are.
pub(super) fn history(g: &Gateway, q: &HashMap<String, String>) -> Response {
    let Some(conid) = q.get("conid").and_then(|c| c.parse::<i64>().ok()) else {
        return error(400, "conid is required and must be a number");
    };
    let limits = [("min", 30), ("h", 8), ("d", 1000), ("w", 792), ("m", 182), ("y", 15)];
    let Some((count, unit, period)) = q.get("period").and_then(|p| duration(p)) else {
        return error(400, "period must be {1-30}min, {1-8}h, {1-1000}d, {1-792}w, {1-182}m or {1-15}y");
    };
    if limits.iter().any(|(u, max)| *u == unit && count > *max) {
        return error(400, "period is out of range");
    }
    let bars =
        ["1min", "2min", "3min", "5min", "10min", "15min", "30min", "1h", "2h", "3h", "4h", "8h", "1d", "1w", "1m"];
    let bar_text = q.get("bar").map(String::as_str).unwrap_or_default();
    let Some((_, _, bar)) = bars.contains(&bar_text).then(|| duration(bar_text)).flatten() else {
        return error(
            400,
            "bar must be one of 1min, 2min, 3min, 5min, 10min, 15min, 30min, 1h, 2h, 3h, 4h, 8h, 1d, 1w, 1m",
        );
    };
    // Step size: (period, smallest bar, largest bar). Between two columns the
    // smallest bar comes from the column below, the largest from the one above.
    let steps = "1min:1min:1min 1h:1min:8h 1d:1min:8h 1w:10min:1w 1m:1h:1m 3m:2h:1m 6m:4h:1m 1y:8h:1m 2y:1d:1m 3y:1d:1m 15y:1w:1m";
    let steps: Vec<Vec<&str>> = steps.split(' ').map(|step| step.split(':').collect()).collect();
    let secs = |text: &str| duration(text).map_or(0, |(_, _, s)| s);
    let below = steps.iter().rev().find(|step| secs(step[0]) <= period).unwrap_or(&steps[0]);
    let above = steps.iter().find(|step| secs(step[0]) >= period).unwrap_or(&steps[steps.len() - 1]);
    if bar < secs(below[1]) || bar > secs(above[2]) {
        return error(400, &format!("bar {bar_text} is not allowed for period {}", q["period"]));
    }
    let outside_rth = match q.get("outsideRth").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return error(400, "outsideRth must be true or false"),
    };
    if q.get("source").is_some_and(|s| !["Trades", "Midpoint", "Bid_Ask"].contains(&s.as_str())) {
        return error(400, "source must be Trades, Midpoint or Bid_Ask");
    }
    // The window is the period ending at startTime (UTC), else now, end excluded.
    let end = match q.get("startTime") {
        Some(text) => match parse_utc(text) {
            Some(ms) => ms,
            None => return error(400, "startTime must be YYYYMMDD-HH:mm:ss"),
        },
        None => now_ms(),
    };
    let start = end - period * 1000;
    let symbol = g.contracts.iter().find(|(_, c)| *c == conid).map_or(String::new(), |(s, _)| s.clone());
    let empty = BTreeMap::new();
    let series = match g.bars.get(&conid) {
        Some(series) => series,
        None if !symbol.is_empty() => &empty,
        None => return error(400, &format!("conid {conid} is not a valid contract")),
    };
    let window: Vec<(&i64, &[f64; 5])> = series.range(start..end).collect();
    let bars = &window[window.len().saturating_sub(MAX_POINTS)..];
    let first = bars.first().map_or(start, |(t, _)| **t);
    // "%h/%v/%t": price scaled by priceFactor, volume, minutes from the start.
    let extreme = |index: usize, better: fn(f64, f64) -> bool| {
        let mut pick: Option<&(&i64, &[f64; 5])> = None;
        for candidate in bars {
            if pick.is_none_or(|p| better(candidate.1[index], p.1[index])) {
                pick = Some(candidate);
            }
        }
        pick.map_or(String::new(), |(t, v)| {
            format!("{}/{}/{}", (v[index] * 100.0).round(), v[4], (**t - first) / 60_000)
        })
    };
    let data: Vec<Value> =
        bars.iter().map(|(t, v)| json!({"o": v[0], "c": v[3], "h": v[1], "l": v[2], "v": v[4], "t": t})).collect();
    // `points` is taken as the number of bars served.
    json(
        200,
        json!({"serverId": "20477", "symbol": symbol, "text": if symbol.is_empty() { String::new() } else { format!("{symbol} INC") }, "priceFactor": 100,
        "startTime": utc(first, false), "high": extreme(1, |a, b| a > b), "low": extreme(2, |a, b| a < b),
        "timePeriod": q["period"], "barLength": bar, "mdAvailability": "S", "mktDataDelay": 0,
        "outsideRth": outside_rth, "tradingDayDuration": 1440, "volumeFactor": 1, "priceDisplayRule": 1,
        "priceDisplayValue": "2", "negativeCapable": false, "messageVersion": 2, "points": data.len(), "data": data,
        "travelTime": 1}),
    )
}

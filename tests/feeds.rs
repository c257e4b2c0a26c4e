//! Venue feeds against fake servers on loopback: wire formats from the
//! venues' own examples, pagination, faults, and exactly-once delivery
//! across restarts through the SQLite store.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use stratbox::bar::Bar;
use stratbox::feed::BarSource;
use stratbox::feed::{
    AlpacaBars, AlpacaBarsConfig, AlpacaCredentials, BinanceKlines, BinanceKlinesConfig, FeedError, KalshiCandles,
    KalshiCandlesConfig, KalshiMarket, MarketData, PollSchedule, PolledFeed, wire,
};
use stratbox::store::Store;
use stratbox::venue::VenueError;
use stratbox_tests::fake::{FakeVenue, Fault, KALSHI_MAX_CANDLES, alpaca_bar, alpaca_time};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/test_data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn symbols(names: &[&str]) -> Vec<Arc<str>> {
    names.iter().map(|s| Arc::from(*s)).collect()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

fn keys() -> AlpacaCredentials {
    AlpacaCredentials { key_id: "test-key".into(), secret_key: "test-secret".into() }
}

fn alpaca(venue: &FakeVenue, names: &[&str], page_limit: u32) -> AlpacaBars {
    let config = AlpacaBarsConfig {
        data_url: venue.url.clone(),
        symbols: names.iter().map(|s| s.to_string()).collect(),
        timeframe: "1Min".into(),
        feed: "iex".into(),
        page_limit,
    };
    AlpacaBars::new(client(), config, keys()).unwrap()
}

fn schedule(backfill_from: i64) -> PollSchedule {
    PollSchedule { every: Duration::from_millis(40), delay: Duration::ZERO, backfill_from }
}

/// Reads batches until `count` bars arrived (bounded in time).
async fn take_bars(feed: &mut impl MarketData, count: usize) -> Vec<Bar> {
    let mut bars = Vec::new();
    while bars.len() < count {
        let batch = tokio::time::timeout(Duration::from_secs(60), feed.next_batch())
            .await
            .expect("the feed stalled")
            .unwrap()
            .unwrap();
        assert!(batch.windows(2).all(|w| w[0].time == w[1].time), "a batch holds one timestamp");
        bars.extend(batch);
    }
    assert_eq!(bars.len(), count, "no extra bars");
    bars
}

#[test]
fn alpaca_example_payload_parses_exactly() {
    let (bars, next) = wire::alpaca_bars(&fixture("alpaca_bars.json"), &symbols(&["AAPL", "TSLA"])).unwrap();
    assert_eq!(next, None);
    assert_eq!(bars.len(), 2);
    let aapl = &bars[0];
    assert_eq!((&*aapl.symbol, aapl.open, aapl.low, aapl.close), ("AAPL", dec("163.02"), dec("162.43"), dec("165.12")));
    assert_eq!(aapl.volume, Decimal::from(90_552_883));
    assert_eq!(bars[1].low, dec("814.7075"), "no float rounding");
    // A symbol that was not asked for is ignored.
    let (only_aapl, _) = wire::alpaca_bars(&fixture("alpaca_bars.json"), &symbols(&["AAPL"])).unwrap();
    assert_eq!(only_aapl.len(), 1);
}

#[test]
fn alpaca_bad_answers_are_errors_with_an_excerpt() {
    let syms = symbols(&["AAPL"]);
    for body in [
        &b"not json"[..],
        br#"{"bars": {"AAPL": [{"t": "2022-02-28T05:00:00Z", "o": 1}]}, "next_page_token": null}"#,
        br#"{"bars": {"AAPL": [{"t": "yesterday", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}]}, "next_page_token": null}"#,
        br#"{"bars": {"AAPL": [{"t": "2022-02-28T05:00:00Z", "o": "1", "h": 1, "l": 1, "c": 1, "v": -1}]}}"#,
    ] {
        let err = wire::alpaca_bars(body, &syms).unwrap_err();
        assert!(matches!(err, FeedError::Venue(VenueError::Malformed { venue: "alpaca", .. })), "{err}");
    }
    let (empty, _) = wire::alpaca_bars(br#"{"bars": null, "next_page_token": null}"#, &syms).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn binance_example_kline_parses_and_open_candles_are_held_back() {
    let body = fixture("binance_klines.json");
    let sym: Arc<str> = Arc::from("LTCBTC");
    let bars = wire::binance_klines(&body, &sym, 1_499_644_800_000).unwrap();
    assert_eq!(bars.len(), 1);
    assert_eq!((bars[0].time, bars[0].open, bars[0].high), (1_499_040_000_000, dec("0.01634790"), dec("0.80000000")));
    assert_eq!(bars[0].volume, dec("148976.11427815"));
    // Before its close time the candle is still forming.
    assert!(wire::binance_klines(&body, &sym, 1_499_644_799_999).unwrap().is_empty());
    for bad in [&b"[[1, 2]]"[..], br#"[[1,"a","1","1","1","1",2,"0",0,"0","0","0"]]"#, b"{\"code\":-1121}"] {
        assert!(matches!(
            wire::binance_klines(bad, &sym, i64::MAX),
            Err(FeedError::Venue(VenueError::Malformed { .. }))
        ));
    }
}

#[test]
fn kalshi_cents_and_dollar_strings_both_become_dollars() {
    let ticker: Arc<str> = Arc::from("KXHIGHNY-24JAN01-T60");
    let minute = Duration::from_secs(60);
    let cents = wire::kalshi_candles(&fixture("kalshi_candles_cents.json"), &ticker, minute, "/c").unwrap();
    assert_eq!(cents.len(), 1, "a period without trades has no bar");
    assert_eq!((cents[0].open, cents[0].close, cents[0].volume), (dec("0.45"), dec("0.46"), Decimal::from(15)));
    assert_eq!(cents[0].time, 1_704_067_200_000, "stamped with the open time");
    let dollars = wire::kalshi_candles(&fixture("kalshi_candles_dollars.json"), &ticker, minute, "/c").unwrap();
    assert_eq!((dollars[0].open, dollars[0].high), (dec("0.4500"), dec("0.4700")));
    let bad = br#"{"candlesticks": [{"end_period_ts": 1, "price": {"open_dollars": "lots", "high": 1, "low": 1, "close": 1}}]}"#;
    assert!(wire::kalshi_candles(bad, &ticker, minute, "/c").is_err());
}

#[test]
fn missing_credentials_name_the_variable() {
    let err = AlpacaCredentials::from_lookup(|_| None).unwrap_err();
    assert_eq!(err.to_string(), "missing credentials: set the environment variable APCA_API_KEY_ID");
    let err = AlpacaCredentials::from_lookup(|v| (v == "APCA_API_KEY_ID").then(|| "k".to_string())).unwrap_err();
    assert!(err.to_string().contains("APCA_API_SECRET_KEY"), "{err}");
}

#[tokio::test]
async fn alpaca_bars_arrive_once_in_order_across_pages_and_restarts() {
    let venue = FakeVenue::start().await;
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 0..15 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, &format!("{}.25", 180 + minute))));
            s.alpaca_bars.push(("MSFT".into(), alpaca_bar(minute, &format!("{}.5", 370 - minute))));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("feed.db")).unwrap());

    // First run: backfill everything, across pages of 7 bars.
    let mut feed = PolledFeed::new(alpaca(&venue, &["AAPL", "MSFT"], 7), store.clone(), schedule(alpaca_time(0)));
    let first = take_bars(&mut feed, 30).await;
    let times: Vec<i64> = first.iter().map(|b| b.time).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order across symbols");
    assert_eq!(first[0].close, dec("180.25"));
    assert!(venue.requests().iter().any(|r| r.contains("page_token=7")), "pagination was followed");
    feed.ack().await.unwrap();
    drop(feed);

    // Downtime: five more minutes are published.
    {
        let mut s = venue.state.lock().unwrap();
        for minute in 15..20 {
            s.alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "1")));
            s.alpaca_bars.push(("MSFT".into(), alpaca_bar(minute, "2")));
        }
    }
    // Restart: only the gap is delivered, nothing twice.
    let mut feed = PolledFeed::new(alpaca(&venue, &["AAPL", "MSFT"], 7), store.clone(), schedule(alpaca_time(0)));
    let second = take_bars(&mut feed, 10).await;
    assert_eq!(second.first().unwrap().time, alpaca_time(15));
    assert_eq!(second.last().unwrap().time, alpaca_time(19));
    assert_eq!(
        store.cursor("alpaca", "MSFT").unwrap(),
        Some(alpaca_time(18)),
        "the last batch is not acknowledged yet"
    );

    // A crash before the last batch is acknowledged: it comes again, once.
    drop(feed);
    let mut feed = PolledFeed::new(alpaca(&venue, &["AAPL", "MSFT"], 7), store.clone(), schedule(alpaca_time(0)));
    let again = take_bars(&mut feed, 2).await;
    assert!(again.iter().all(|b| b.time == alpaca_time(19)), "{again:?}");
    feed.ack().await.unwrap();
    assert_eq!(store.cursor("alpaca", "AAPL").unwrap(), Some(alpaca_time(19)));
}

#[tokio::test]
async fn a_feed_rides_out_throttling_and_garbage() {
    let venue = FakeVenue::start().await;
    venue.state.lock().unwrap().alpaca_bars.push(("AAPL".into(), alpaca_bar(0, "10")));
    venue.fail_next(Fault::Malformed);
    venue.fail_next(Fault::Status { code: 500, retry_after: None });
    venue.fail_next(Fault::Status { code: 429, retry_after: Some(1) });
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("feed.db")).unwrap());
    let mut feed = PolledFeed::new(alpaca(&venue, &["AAPL"], 100), store, schedule(alpaca_time(0)));
    let bars = take_bars(&mut feed, 1).await;
    assert_eq!(bars[0].close, dec("10"));
    assert_eq!(venue.requests().len(), 4, "three failures, then success");
}

#[tokio::test]
async fn binance_delivers_closed_klines_only() {
    let venue = FakeVenue::start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let minute = 60_000;
    let start = (now / minute - 5) * minute;
    let rows: Vec<_> = (0..6)
        .map(|i| {
            let open = start + i * minute;
            json!([open, "1.5", "2.0", "1.0", format!("1.{i}"), "10", open + minute - 1, "15", 3, "5", "7", "0"])
        })
        .collect();
    venue.state.lock().unwrap().binance_klines.insert("BTCUSDT".into(), rows);
    let config =
        BinanceKlinesConfig { base_url: venue.url.clone(), symbols: vec!["BTCUSDT".into()], interval: "1m".into() };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("feed.db")).unwrap());
    let mut feed = PolledFeed::new(BinanceKlines::new(client(), config).unwrap(), store, schedule(start));
    let bars = take_bars(&mut feed, 5).await;
    assert_eq!(bars.last().unwrap().close, dec("1.4"), "the sixth candle is still open");
    assert!(venue.requests()[0].contains("interval=1m") && venue.requests()[0].contains("symbol=BTCUSDT"));
}

#[tokio::test]
async fn kalshi_polls_each_market_by_series_and_ticker() {
    let venue = FakeVenue::start().await;
    let candles: Vec<_> = (1..=3)
        .map(|i| json!({"end_period_ts": 1_704_067_200 + i * 60, "volume": i, "price": {"open": 40 + i, "high": 50, "low": 30, "close": 45}}))
        .collect();
    venue.state.lock().unwrap().kalshi_candles.insert(("KXHIGHNY".into(), "KXHIGHNY-24JAN01-T60".into()), candles);
    let config = KalshiCandlesConfig {
        base_url: venue.url.clone(),
        markets: vec![KalshiMarket { series: "KXHIGHNY".into(), ticker: "KXHIGHNY-24JAN01-T60".into() }],
        period_minutes: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("feed.db")).unwrap());
    let mut feed = PolledFeed::new(KalshiCandles::new(client(), config).unwrap(), store, schedule(1_704_067_200_000));
    let bars = take_bars(&mut feed, 3).await;
    assert_eq!(bars.iter().map(|b| b.open).collect::<Vec<_>>(), vec![dec("0.41"), dec("0.42"), dec("0.43")]);
    assert!(
        venue.requests()[0].starts_with("/trade-api/v2/series/KXHIGHNY/markets/KXHIGHNY-24JAN01-T60/candlesticks?")
    );
}

#[tokio::test]
async fn an_unknown_symbol_is_a_clear_venue_error() {
    let venue = FakeVenue::start().await;
    let config =
        BinanceKlinesConfig { base_url: venue.url.clone(), symbols: vec!["NOPEUSDT".into()], interval: "1m".into() };
    let err = BinanceKlines::new(client(), config).unwrap().fetch(0, i64::MAX).await.unwrap_err();
    let text = err.to_string();
    let refused = matches!(err, FeedError::Venue(VenueError::Rejected { status: 400, code: Some(_), .. }));
    assert!(refused, "{text}");
    assert!(text.contains("binance /api/v3/klines") && text.contains("Invalid symbol"), "{text}");
}

#[tokio::test]
async fn the_fake_refuses_fractional_times_as_the_spec_says() {
    let venue = FakeVenue::start().await;
    venue.state.lock().unwrap().alpaca_bars.push(("AAPL".into(), alpaca_bar(0, "10")));
    let get = |query: &'static str| {
        client()
            .get(format!("{}/v2/stocks/bars?symbols=AAPL&timeframe=1Min&{query}", venue.url))
            .header("APCA-API-KEY-ID", "k")
            .header("APCA-API-SECRET-KEY", "s")
            .send()
    };
    for bad in ["start=2024-01-02T14:30:00.500Z", "end=2024-01-02T14:31:00.000Z", "start=yesterday", "limit=0"] {
        assert_eq!(get(bad).await.unwrap().status(), 400, "{bad}");
    }
    assert_eq!(get("start=2024-01-02T14:30:00Z&end=2024-01-02T14:31:00Z").await.unwrap().status(), 200);
}

#[tokio::test]
async fn alpaca_asks_from_a_whole_second() {
    let venue = FakeVenue::start().await;
    for minute in 0..3 {
        venue.state.lock().unwrap().alpaca_bars.push(("AAPL".into(), alpaca_bar(minute, "10")));
    }
    // A cursor one millisecond past a bar, as the poller computes it.
    let bars = alpaca(&venue, &["AAPL"], 100).fetch(alpaca_time(0) + 1, i64::MAX).await.unwrap();
    assert_eq!(bars.first().map(|b| b.time), Some(alpaca_time(0)), "rounded down: nothing is skipped");
    assert_eq!(bars.len(), 3);
    assert!(venue.requests()[0].contains("start=2024-01-02T14:30:00Z&"), "{:?}", venue.requests());
}

#[test]
fn alpaca_volume_is_a_decimal_number() {
    let body = br#"{"bars": {"BTC/USD": [{"t": "2022-03-10T19:30:00Z", "x": "FTXU", "o": 39284, "h": 39284,
        "l": 39200, "c": 39200, "v": 1.1271, "n": 9, "vw": 39233.9329252063}]}, "next_page_token": null}"#;
    let (bars, _) = wire::alpaca_bars(body, &symbols(&["BTC/USD"])).unwrap();
    assert_eq!(bars[0].volume, dec("1.1271"), "the spec types v as a number, as in its crypto example");
}

#[tokio::test]
async fn refused_credentials_are_unauthorized_not_a_plain_status() {
    let venue = FakeVenue::start().await;
    // The data API answers 403 to keys without access to the feed.
    for code in [401, 403] {
        venue.fail_next(Fault::Status { code, retry_after: None });
        let err = alpaca(&venue, &["AAPL"], 100).fetch(alpaca_time(0), i64::MAX).await.unwrap_err();
        assert!(
            matches!(&err, FeedError::Venue(VenueError::Unauthorized { venue: "alpaca", status, .. }) if *status == code),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_long_kalshi_backfill_is_asked_for_in_pieces_under_the_cap() {
    let venue = FakeVenue::start().await;
    let start = 1_704_067_200; // a whole minute
    let minutes = [1, KALSHI_MAX_CANDLES + 7, 2 * KALSHI_MAX_CANDLES + 100];
    let candles: Vec<_> = minutes
        .iter()
        .map(|m| json!({"end_period_ts": start + m * 60, "volume": 1, "price": {"open": 40, "high": 50, "low": 30, "close": 45}}))
        .collect();
    venue.state.lock().unwrap().kalshi_candles.insert(("S".into(), "T".into()), candles);
    let config = KalshiCandlesConfig {
        base_url: venue.url.clone(),
        markets: vec![KalshiMarket { series: "S".into(), ticker: "T".into() }],
        period_minutes: 1,
    };
    let now = (start + (2 * KALSHI_MAX_CANDLES + 200) * 60) * 1000;
    let bars = KalshiCandles::new(client(), config).unwrap().fetch(start * 1000, now).await.unwrap();
    assert_eq!(bars.len(), 3, "every piece was read");
    assert_eq!(venue.requests().len(), 3, "three pieces of at most {KALSHI_MAX_CANDLES} candles");
}

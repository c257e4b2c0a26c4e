//! Turns a venue's bar endpoint into a feed that delivers each closed bar
//! once, in time order, across restarts.
//!
//! The last bar delivered per feed and symbol is kept in the [`Store`]. At
//! start the feed backfills from there (or from a configured start), then
//! polls at the configured period, aligned to its boundaries. A batch
//! counts as consumed when the next one is requested, so a crash while a
//! batch is processed delivers that batch again rather than losing it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{FeedError, MarketData};
use crate::bar::{Bar, Millis, now_ms};
use crate::store::Store;
use crate::stream::Update;
use crate::venue::VenueError;

/// How long streamed bars of one time wait for the other symbols' bars.
pub const HOLD: Duration = Duration::from_millis(250);

/// A venue endpoint that returns bars for a time range.
#[async_trait::async_trait]
pub trait BarSource: Send + Sync {
    /// The venue's name; it keys the cursors.
    fn name(&self) -> &str;

    fn symbols(&self) -> &[Arc<str>];

    /// How long one bar spans.
    fn period(&self) -> Duration;

    /// Bars opening at or after `start` for every symbol, in any order;
    /// at least those closed by `end` (the live feed passes the time now,
    /// a download its window's end). Bars past `end` may come too.
    async fn fetch(&self, start: Millis, end: Millis) -> Result<Vec<Bar>, FeedError>;
}

/// When and from where to poll.
#[derive(Debug, Clone)]
pub struct PollSchedule {
    /// Time between polls; polls fall on multiples of it, plus `delay`.
    pub every: Duration,
    /// Wait after a boundary, so the venue has published the bar.
    pub delay: Duration,
    /// Where to start when a symbol has no cursor yet.
    pub backfill_from: Millis,
}

/// A [`MarketData`] feed polling a [`BarSource`].
pub struct PolledFeed<S> {
    source: S,
    store: Arc<Store>,
    schedule: PollSchedule,
    /// Batches fetched but not yet delivered, one timestamp each.
    ready: VecDeque<Vec<Bar>>,
    /// The batch handed out last, committed when the next is asked for.
    delivered: Option<Vec<Bar>>,
    polled_once: bool,
    /// For the first poll only: deliver again from here, whatever the cursors say.
    rewind: Option<Millis>,
    now: fn() -> Millis,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The venue's bar stream, when it has one.
    live: Option<Live>,
}

/// A venue's bar stream beside the polls.
struct Live {
    updates: mpsc::Receiver<Update<Bar>>,
    connected: bool,
    /// Whether a poll has run since the stream last connected: until then a
    /// streamed bar may follow a gap only a poll can fill, and is left to it.
    synced: bool,
    /// The stream has just connected: poll at once.
    poll_now: bool,
    /// The newest bar taken per symbol: delivered, queued or held.
    heard: HashMap<Arc<str>, Millis>,
    /// Streamed bars by time, held until their time is complete.
    held: BTreeMap<Millis, Vec<Bar>>,
    held_since: Option<tokio::time::Instant>,
}

/// What woke the feed.
enum Wake {
    Poll,
    Update(Option<Update<Bar>>),
    Release,
}

impl<S: BarSource> PolledFeed<S> {
    pub fn new(source: S, store: Arc<Store>, schedule: PollSchedule) -> Self {
        Self {
            source,
            store,
            schedule,
            ready: VecDeque::new(),
            delivered: None,
            polled_once: false,
            rewind: None,
            now: now_ms,
            metrics: None,
            live: None,
        }
    }

    /// Takes bars the venue pushes on `updates` as well as polling.
    pub fn with_stream(mut self, updates: mpsc::Receiver<Update<Bar>>) -> Self {
        self.live = Some(Live {
            updates,
            connected: false,
            synced: false,
            poll_now: false,
            heard: HashMap::new(),
            held: BTreeMap::new(),
            held_since: None,
        });
        self
    }

    /// Times each poll into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Persists the cursors of the batch handed out last.
    fn commit(&mut self) -> Result<(), FeedError> {
        if let Some(batch) = self.delivered.take() {
            for bar in &batch {
                self.store.advance_cursor(self.source.name(), &bar.symbol, bar.time)?;
            }
        }
        Ok(())
    }

    /// When to poll next: at once the first time (backfill) and after a
    /// stream connects, then on the next boundary of the period plus the delay.
    fn next_poll_at(&self) -> tokio::time::Instant {
        let at_once = tokio::time::Instant::now();
        if !self.polled_once || self.live.as_ref().is_some_and(|l| l.poll_now) {
            return at_once;
        }
        let every = self.schedule.every.as_millis().max(1) as i64;
        let now = (self.now)();
        let next = (now.div_euclid(every) + 1) * every + self.schedule.delay.as_millis() as i64;
        at_once + Duration::from_millis((next - now).max(0) as u64)
    }

    /// Waits for the next poll, stream update or release of held bars.
    async fn wake(&mut self) -> Wake {
        let poll_at = self.next_poll_at();
        let Some(live) = self.live.as_mut() else {
            tokio::time::sleep_until(poll_at).await;
            return Wake::Poll;
        };
        let release_at = live.held_since.map(|since| since + HOLD);
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(poll_at) => Wake::Poll,
            () = async { match release_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => Wake::Release,
            update = live.updates.recv() => Wake::Update(update),
        }
    }

    /// Takes one stream update: see the module's documentation.
    fn take(&mut self, update: Update<Bar>) {
        let Some(live) = self.live.as_mut() else { return };
        match update {
            // Reported as listening once the poll that follows has gone through.
            Update::Connected => (live.connected, live.synced, live.poll_now) = (true, false, true),
            Update::Down { error } => {
                (live.connected, live.synced) = (false, false);
                if let Some(metrics) = &self.metrics {
                    metrics.tally.feed_stream(self.source.name(), Some(&error));
                }
            }
            Update::Item { item: bar } => {
                let newer = live.heard.get(&bar.symbol).is_none_or(|&last| bar.time > last);
                if !live.synced || !newer {
                    return;
                }
                live.heard.insert(bar.symbol.clone(), bar.time);
                let time = bar.time;
                live.held.entry(time).or_default().push(bar);
                live.held_since.get_or_insert_with(tokio::time::Instant::now);
                // A later bar completes the times before it.
                self.release(time - 1);
                let complete = self
                    .live
                    .as_ref()
                    .is_some_and(|l| l.held.get(&time).is_some_and(|held| held.len() >= self.source.symbols().len()));
                if complete {
                    self.release(time);
                }
            }
        }
    }

    /// Queues the held bars of every time up to `until`, in time order.
    fn release(&mut self, until: Millis) {
        let Some(live) = self.live.as_mut() else { return };
        while let Some(entry) = live.held.first_entry() {
            if *entry.key() > until {
                break;
            }
            let mut batch = entry.remove();
            batch.sort_by(|a, b| a.symbol.cmp(&b.symbol));
            self.ready.push_back(batch);
        }
        live.held_since = if live.held.is_empty() { None } else { Some(tokio::time::Instant::now()) };
    }

    /// Fetches what is new since the cursors and queues it by timestamp.
    async fn poll(&mut self) -> Result<(), FeedError> {
        let name = self.source.name().to_string();
        let mut cursors = Vec::with_capacity(self.source.symbols().len());
        let rewind = self.rewind.take();
        for symbol in self.source.symbols() {
            let cursor = self.store.cursor(&name, symbol)?;
            let cursor = match (cursor, rewind) {
                (Some(cursor), Some(rewind)) => Some(cursor.min(rewind)),
                (None, Some(_)) => None,
                // What the stream delivered, or has queued, is taken too.
                (cursor, None) => {
                    let heard = self.live.as_ref().and_then(|l| l.heard.get(symbol).copied());
                    cursor.max(heard)
                }
            };
            if let (Some(live), Some(cursor)) = (self.live.as_mut(), cursor) {
                let last = live.heard.entry(symbol.clone()).or_insert(cursor);
                *last = (*last).max(cursor);
            }
            cursors.push((symbol.clone(), cursor));
        }
        let start = cursors
            .iter()
            .map(|(_, c)| c.map_or(self.schedule.backfill_from, |c| c + 1))
            .min()
            .unwrap_or(self.schedule.backfill_from);
        let now = (self.now)();
        let period = self.source.period().as_millis() as i64;
        let started = std::time::Instant::now();
        let fetched = self.source.fetch(start, now).await;
        if let Some(metrics) = &self.metrics {
            let labels = crate::metrics::FeedLabels { feed: name.clone() };
            metrics.feed_poll.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        }
        let mut bars = fetched?;
        bars.retain(|bar| {
            let Some((_, cursor)) = cursors.iter().find(|(s, _)| *s == bar.symbol) else { return false };
            let fresh = cursor.is_none_or(|c| bar.time > c) && bar.time >= self.schedule.backfill_from.min(start);
            fresh && bar.time.saturating_add(period) <= now
        });
        bars.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.symbol.cmp(&b.symbol)));
        // A venue that repeats a bar (overlapping pages) delivers it once.
        bars.dedup_by(|a, b| a.time == b.time && a.symbol == b.symbol);
        if let Some(live) = self.live.as_mut() {
            for bar in &bars {
                let last = live.heard.entry(bar.symbol.clone()).or_insert(bar.time);
                *last = (*last).max(bar.time);
            }
        }
        let mut start = 0;
        while start < bars.len() {
            let time = bars[start].time;
            let end = bars[start..].iter().position(|b| b.time != time).map_or(bars.len(), |n| start + n);
            self.ready.push_back(bars[start..end].to_vec());
            start = end;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<S: BarSource> MarketData for PolledFeed<S> {
    async fn ack(&mut self) -> Result<(), FeedError> {
        self.commit()
    }

    fn rewind_to(&mut self, time: Millis) -> Result<(), FeedError> {
        self.rewind = Some(time);
        Ok(())
    }

    async fn next_batch(&mut self) -> Result<Option<Vec<Bar>>, FeedError> {
        self.commit()?;
        loop {
            if let Some(batch) = self.ready.pop_front() {
                self.delivered = Some(batch.clone());
                return Ok(Some(batch));
            }
            match self.wake().await {
                Wake::Poll => {}
                Wake::Release => {
                    self.release(Millis::MAX);
                    continue;
                }
                // The stream's task is gone: polling carries on alone.
                Wake::Update(None) => {
                    self.live = None;
                    continue;
                }
                Wake::Update(Some(update)) => {
                    self.take(update);
                    continue;
                }
            }
            // Held bars go first, so a poll never queues a later time before them.
            if self.live.as_ref().is_some_and(|l| !l.held.is_empty()) {
                self.release(Millis::MAX);
                continue;
            }
            self.polled_once = true;
            if let Some(live) = self.live.as_mut() {
                live.poll_now = false;
            }
            match self.poll().await {
                Ok(()) => {
                    if let Some(live) = self.live.as_mut()
                        && live.connected
                        && !live.synced
                    {
                        live.synced = true;
                        if let Some(metrics) = &self.metrics {
                            metrics.tally.feed_stream(self.source.name(), None);
                        }
                    }
                }
                Err(FeedError::Venue(VenueError::Throttled { venue, retry_after })) => {
                    let wait = retry_after.unwrap_or(self.schedule.every);
                    tracing::warn!(venue, ?wait, "throttled; waiting before the next poll");
                    if let Some(metrics) = &self.metrics {
                        metrics.tally.feed_error(self.source.name(), &format!("throttled by {venue}; waited {wait:?}"));
                    }
                    tokio::time::sleep(wait).await;
                }
                // A bad answer is logged and the feed carries on at the next poll.
                Err(FeedError::Venue(error)) => {
                    tracing::error!(%error, "poll failed");
                    if let Some(metrics) = &self.metrics {
                        metrics.tally.feed_error(self.source.name(), &error.to_string());
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    /// One bar a minute for one symbol, minutes 0 to 9.
    struct Minutes(Vec<Arc<str>>);

    #[async_trait::async_trait]
    impl BarSource for Minutes {
        fn name(&self) -> &str {
            "minutes"
        }
        fn symbols(&self) -> &[Arc<str>] {
            &self.0
        }
        fn period(&self) -> Duration {
            Duration::from_secs(60)
        }
        async fn fetch(&self, start: Millis, _: Millis) -> Result<Vec<Bar>, FeedError> {
            Ok((0..10)
                .map(|m| m * 60_000)
                .filter(|&t| t >= start)
                .map(|time| Bar {
                    symbol: self.0[0].clone(),
                    time,
                    open: 1.into(),
                    high: 1.into(),
                    low: 1.into(),
                    close: 1.into(),
                    volume: 1.into(),
                })
                .collect())
        }
    }

    fn feed(store: &Arc<Store>) -> PolledFeed<Minutes> {
        let schedule = PollSchedule { every: Duration::from_secs(3600), delay: Duration::ZERO, backfill_from: 0 };
        let mut feed = PolledFeed::new(Minutes(vec!["X".into()]), store.clone(), schedule);
        feed.now = || 3_600_000;
        feed
    }

    /// Two symbols, minutes 0 to 2 from the venue's bars endpoint.
    struct Pair;

    #[async_trait::async_trait]
    impl BarSource for Pair {
        fn name(&self) -> &str {
            "pair"
        }
        fn symbols(&self) -> &[Arc<str>] {
            static SYMBOLS: std::sync::LazyLock<[Arc<str>; 2]> = std::sync::LazyLock::new(|| ["X".into(), "Y".into()]);
            &*SYMBOLS
        }
        fn period(&self) -> Duration {
            Duration::from_secs(60)
        }
        async fn fetch(&self, start: Millis, _: Millis) -> Result<Vec<Bar>, FeedError> {
            let bars = self.symbols().iter().flat_map(|s| (0..3).map(|m| bar(s, m)));
            Ok(bars.filter(|b| b.time >= start).collect())
        }
    }

    fn bar(symbol: &Arc<str>, minute: i64) -> Bar {
        let one = Decimal::ONE;
        Bar { symbol: symbol.clone(), time: minute * 60_000, open: one, high: one, low: one, close: one, volume: one }
    }

    fn shape(batch: &[Bar]) -> Vec<String> {
        batch.iter().map(|b| format!("{}{}", b.symbol, b.time / 60_000)).collect()
    }

    /// Streamed bars of one time go out together; a time left incomplete
    /// goes out after the hold; repeats and older bars are dropped.
    #[tokio::test(start_paused = true)]
    async fn streamed_bars_are_held_until_their_time_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("f.db")).unwrap());
        let (tx, rx) = mpsc::channel(16);
        let schedule = PollSchedule { every: Duration::from_secs(3600), delay: Duration::ZERO, backfill_from: 0 };
        let mut feed = PolledFeed::new(Pair, store, schedule).with_stream(rx);
        feed.now = || 600_000;
        for minute in 0..3 {
            assert_eq!(shape(&feed.next_batch().await.unwrap().unwrap()), [format!("X{minute}"), format!("Y{minute}")]);
        }
        let (x, y): (Arc<str>, Arc<str>) = ("X".into(), "Y".into());
        tx.send(Update::Connected).await.unwrap();
        // The poll that follows the connection runs first (it finds nothing
        // new); then the stream is taken.
        for update in [
            Update::Item { item: bar(&x, 3) },
            Update::Item { item: bar(&y, 3) },
            Update::Item { item: bar(&x, 3) },
            Update::Item { item: bar(&y, 1) },
            Update::Item { item: bar(&x, 4) },
        ] {
            tx.send(update).await.unwrap();
        }
        let started = tokio::time::Instant::now();
        assert_eq!(shape(&feed.next_batch().await.unwrap().unwrap()), ["X3", "Y3"]);
        assert_eq!(shape(&feed.next_batch().await.unwrap().unwrap()), ["X4"]);
        assert!(started.elapsed() >= HOLD, "X4 waited for Y4");
        assert!(started.elapsed() < Duration::from_secs(60), "and not for the next poll");
    }

    /// The cursor moves when a batch is queued to the strategies, before
    /// they commit it; after a crash, the bars a strategy had not committed
    /// are delivered again from where it had.
    #[tokio::test]
    async fn a_rewound_feed_delivers_again_what_a_strategy_had_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("f.db")).unwrap());
        let mut first = feed(&store);
        for _ in 0..6 {
            first.next_batch().await.unwrap();
        }
        first.ack().await.unwrap();
        assert_eq!(store.cursor("minutes", "X").unwrap(), Some(5 * 60_000));

        // The strategy committed minute 2 only.
        let mut second = feed(&store);
        second.rewind_to(2 * 60_000).unwrap();
        let mut times = Vec::new();
        while times.len() < 7 {
            let batch = second.next_batch().await.unwrap().unwrap();
            times.extend(batch.iter().map(|b| b.time / 60_000));
        }
        assert_eq!(times, [3, 4, 5, 6, 7, 8, 9]);
        second.ack().await.unwrap();
        assert_eq!(store.cursor("minutes", "X").unwrap(), Some(9 * 60_000), "the cursor never moved back");
    }
}

//! The feed's side of host mode: a task that takes batches from the market
//! data and hands each to every engine, at the pace of the fastest, so a
//! slow strategy falls behind alone.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::live::{EngineInput, PriceWatch};
use super::status::HostStatus;
use crate::bar::Bar;
use crate::feed::FeedError;

/// The engines the feed hands batches to; strategies added while the host
/// runs join it, and those that end drop out.
pub(super) type Taps = Arc<RwLock<Vec<FeedTap>>>;

/// The feed's way into one engine, and the count of bars it dropped there.
#[derive(Clone)]
pub(super) struct FeedTap {
    pub input: mpsc::Sender<EngineInput>,
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
    /// Set while the engine's strategy has failed: it takes no bars, so the
    /// feed neither sends it any nor lets it set the pace.
    pub retired: Arc<std::sync::atomic::AtomicBool>,
    /// The symbols the instance hears.
    pub symbols: Subscription,
}

/// The feed's symbols an instance hears (all of them when none are named),
/// changeable while it runs.
#[derive(Debug, Clone, Default)]
pub(super) struct Subscription(Arc<RwLock<Option<Symbols>>>);

/// Symbols named by an instance, shared by every batch handed to it.
type Symbols = Arc<[Arc<str>]>;

impl Subscription {
    pub fn new(symbols: &[String]) -> Self {
        let this = Self::default();
        this.set(symbols);
        this
    }

    /// From now on the instance hears `symbols` (every one when empty).
    pub fn set(&self, symbols: &[String]) {
        let named: Option<Symbols> =
            (!symbols.is_empty()).then(|| symbols.iter().map(|s| Arc::from(s.as_str())).collect());
        if let Ok(mut slot) = self.0.write() {
            *slot = named;
        }
    }

    /// The symbols named; `None` for all of the feed's.
    pub fn names(&self) -> Option<Vec<String>> {
        self.get().map(|symbols| symbols.iter().map(|s| s.to_string()).collect())
    }

    fn get(&self) -> Option<Symbols> {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }
}

impl FeedTap {
    /// The part of `batch` this instance hears: all of it, or its symbols'
    /// bars (`None` if that leaves nothing).
    fn share(&self, batch: &Arc<[Bar]>) -> Option<Arc<[Bar]>> {
        let Some(symbols) = self.symbols.get() else { return Some(batch.clone()) };
        let heard = |bar: &Bar| symbols.contains(&bar.symbol);
        if batch.iter().all(heard) {
            return Some(batch.clone());
        }
        let share: Vec<Bar> = batch.iter().filter(|bar| heard(bar)).cloned().collect();
        (!share.is_empty()).then(|| share.into())
    }
}

/// Hands each batch to every engine at the pace of the fastest: an engine
/// whose queue is full (a slow, stuck or restarting strategy) while another
/// has room does not get the batch, which is counted, so it falls behind
/// alone. When every queue is full the feed waits for the first to have
/// room, and gives the others a moment more, so a strategy running alone
/// loses nothing. A failed strategy's engine is skipped: it would drain its
/// queue at once and set a pace no live strategy could keep.
/// What the feed counts as it delivers.
pub(super) struct FeedMeter {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub feed: &'static str,
    /// Whether the bars are the venue's now (not a replay), so their lag
    /// behind the clock means something.
    pub live: bool,
    /// Where the dashboard's charts are drawn from.
    pub tape: Arc<crate::tape::Tape>,
}

impl FeedMeter {
    fn delivered(&self, batch: &[Bar], status: &RwLock<HostStatus>) {
        self.tape.record(batch, status);
        let labels = crate::metrics::FeedLabels { feed: self.feed.to_string() };
        self.metrics.feed_bars.get_or_create(&labels).inc_by(batch.len() as u64);
        let newest = batch.iter().map(|b| b.time).max();
        if let Some(newest) = newest {
            self.metrics.tally.bars(self.feed, newest);
        }
        if let Some(newest) = newest
            && self.live
        {
            let lag = (crate::bar::now_ms() - newest) as f64 / 1000.0;
            self.metrics.feed_lag.get_or_create(&labels).set(lag);
        }
    }
}

pub(super) fn spawn_feed(
    mut feed: Box<dyn crate::feed::MarketData>,
    mut alerts: PriceWatch,
    taps: Taps,
    status: Arc<RwLock<HostStatus>>,
    meter: FeedMeter,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), FeedError>>) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                batch = feed.next_batch() => batch?,
                _ = &mut stopped => {
                    // Clean stop: what was handed out has been delivered.
                    feed.ack().await?;
                    return Ok(());
                }
            };
            let Some(batch) = batch else { break };
            meter.delivered(&batch, &status);
            alerts.observe(&batch);
            let batch: Arc<[Bar]> = batch.into();
            let inputs: Vec<FeedTap> = taps.read().map(|t| t.clone()).unwrap_or_default();
            if inputs.iter().any(|tap| tap.input.is_closed())
                && let Ok(mut taps) = taps.write()
            {
                // Engines that ended (removed instances) drop out.
                taps.retain(|tap| !tap.input.is_closed());
            }
            hand_over(&inputs, &batch).await;
        }
        if let Ok(mut s) = status.write() {
            s.feed_done = true;
        }
        Ok(())
    });
    (stop, task)
}

/// How long the feed waits for more strategies once one has room, when
/// every queue was full.
const FEED_GRACE: Duration = Duration::from_millis(20);

/// Delivers `batch` (each engine's share of it) to every engine with room;
/// see [`spawn_feed`].
async fn hand_over(inputs: &[FeedTap], batch: &Arc<[Bar]>) {
    let mut full = Vec::new();
    let mut delivered = false;
    let shares = inputs
        .iter()
        .filter(|tap| !tap.retired.load(std::sync::atomic::Ordering::Relaxed))
        .filter_map(|tap| Some((tap, tap.share(batch)?)));
    for (tap, share) in shares {
        match tap.input.try_send(bars(&share)) {
            Ok(()) => delivered = true,
            Err(mpsc::error::TrySendError::Full(_)) => full.push((tap, share)),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
    if !delivered && !full.is_empty() {
        // Everyone is behind: wait for the first with room, then a moment
        // for the rest.
        let taps: Vec<&FeedTap> = full.iter().map(|(tap, _)| *tap).collect();
        if let Some((at, permit)) = first_with_room(&taps).await {
            permit.send(bars(&full[at].1));
            full.remove(at);
            for (tap, share) in std::mem::take(&mut full) {
                match tokio::time::timeout(FEED_GRACE, tap.input.reserve()).await {
                    Ok(Ok(permit)) => permit.send(bars(&share)),
                    Ok(Err(_)) => {}
                    Err(_) => full.push((tap, share)),
                }
            }
        }
    }
    for (tap, share) in full {
        tap.dropped.fetch_add(share.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

fn bars(batch: &Arc<[Bar]>) -> EngineInput {
    EngineInput::Bars { bars: batch.clone(), sent: std::time::Instant::now() }
}

/// Waits until one of `taps` has room and returns its index and the slot.
async fn first_with_room<'a>(taps: &[&'a FeedTap]) -> Option<(usize, mpsc::Permit<'a, EngineInput>)> {
    // `None` once an engine's queue has closed, so it is not polled again.
    let mut waits: Vec<_> = taps.iter().map(|tap| Some(Box::pin(tap.input.reserve()))).collect();
    std::future::poll_fn(|cx| {
        let mut open = false;
        for (at, slot) in waits.iter_mut().enumerate() {
            let Some(wait) = slot else { continue };
            match wait.as_mut().poll(cx) {
                std::task::Poll::Ready(Ok(permit)) => return std::task::Poll::Ready(Some((at, permit))),
                std::task::Poll::Ready(Err(_)) => *slot = None,
                std::task::Poll::Pending => open = true,
            }
        }
        // Every engine has stopped: nothing to wait for.
        if open { std::task::Poll::Pending } else { std::task::Poll::Ready(None) }
    })
    .await
}

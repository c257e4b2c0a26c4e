//! `GET /metrics`: what the host is doing, in the Prometheus (OpenMetrics)
//! text format.
//!
//! One [`Metrics`] per host, never a process-wide recorder: tests run
//! several hosts in one process, and each must count only its own. Events
//! are counted where they happen (guest calls, router requests, feed
//! polls, webhook intake, outbox deliveries); what the host already keeps
//! for `/health` (each instance's bars, orders, fills, restarts and limit
//! breaches, the venues' trading state, journal lines dropped) is read at
//! scrape time instead of being counted twice.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::HostStatus;
use crate::risk::{RiskGate, TradingState};
pub use crate::tally::Delivery;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedLabels {
    pub feed: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub instance: String,
    pub callback: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VenueLabels {
    pub venue: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrderLabels {
    pub venue: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

/// Seconds, from 10 µs to about 40 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 4.0, 12))
}

/// The host's metrics: the families counted as events happen, and the
/// status read at scrape time.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub feed_bars: Family<FeedLabels, Counter>,
    pub feed_poll: Family<FeedLabels, Histogram, fn() -> Histogram>,
    pub feed_lag: Family<FeedLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub guest_calls: Family<CallLabels, Histogram, fn() -> Histogram>,
    pub orders: Family<OrderLabels, Counter>,
    pub router_requests: Family<VenueLabels, Histogram, fn() -> Histogram>,
    pub fills: Family<VenueLabels, Counter>,
    pub corrections: Family<VenueLabels, Counter>,
    pub webhooks: Family<RouteLabels, Counter>,
    pub outbox_sent: Family<SinkLabels, Counter>,
    pub outbox_retried: Family<SinkLabels, Counter>,
    pub outbox_dropped: Family<SinkLabels, Counter>,
    /// The same events, kept per edge with their last errors for `/health`.
    pub tally: Arc<crate::tally::Tally>,
    /// Set once the host knows them: what the scrape reads.
    sources: Arc<Sources>,
}

/// What the scrape reads besides the counters: set as the host starts.
#[derive(Default)]
struct Sources {
    gate: std::sync::OnceLock<RiskGate>,
    /// The store holding the outbox, and the configured sinks.
    store: std::sync::OnceLock<(Arc<crate::store::Store>, Vec<String>)>,
    journal_dropped: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
}

impl Metrics {
    /// Metrics reading `status` at each scrape (and, once set, the venues'
    /// trading state and the outbox's depth).
    pub fn new(status: Arc<RwLock<HostStatus>>) -> Arc<Self> {
        let mut registry = Registry::with_prefix("stratbox");
        let metrics = Self {
            feed_bars: Family::default(),
            feed_poll: Family::new_with_constructor(latency),
            feed_lag: Family::default(),
            guest_calls: Family::new_with_constructor(latency),
            orders: Family::default(),
            router_requests: Family::new_with_constructor(latency),
            fills: Family::default(),
            corrections: Family::default(),
            webhooks: Family::default(),
            outbox_sent: Family::default(),
            outbox_retried: Family::default(),
            outbox_dropped: Family::default(),
            tally: Arc::default(),
            sources: Arc::default(),
            registry: Registry::default(),
        };
        // A family's clones share its values: the registry encodes what
        // the host counts.
        let m = &metrics;
        let r = &mut registry;
        r.register("feed_bars", "Bars the feed delivered", m.feed_bars.clone());
        r.register("feed_poll_seconds", "How long each poll of a venue's bars took", m.feed_poll.clone());
        r.register("feed_lag_seconds", "How far the newest bar delivered trails the time now", m.feed_lag.clone());
        r.register("guest_call_seconds", "How long each call into a strategy took", m.guest_calls.clone());
        r.register("orders", "Order requests to a venue, by outcome", m.orders.clone());
        r.register("router_request_seconds", "How long each order request to a venue took", m.router_requests.clone());
        r.register("fills", "Fills recorded, by venue", m.fills.clone());
        r.register("reconcile_corrections", "Differences reconciliation found and corrected", m.corrections.clone());
        r.register("webhook_requests", "Inbound webhook requests, by route and status", m.webhooks.clone());
        r.register("outbox_sent", "Notifications delivered", m.outbox_sent.clone());
        r.register("outbox_retried", "Notification deliveries retried", m.outbox_retried.clone());
        r.register("outbox_dropped", "Notifications given up on", m.outbox_dropped.clone());
        registry.register_collector(Box::new(StatusCollector { status, sources: metrics.sources.clone() }));
        Arc::new(Self { registry, ..metrics })
    }

    /// A host with no status of its own (tests, tools).
    pub fn detached() -> Arc<Self> {
        Self::new(Arc::default())
    }

    /// Reports the venues' trading state from `gate` from now on.
    pub fn watch_gate(&self, gate: RiskGate) {
        let _ = self.sources.gate.set(gate);
    }

    /// Reports the journal's dropped lines from `counter` from now on.
    pub fn watch_journal(&self, counter: Arc<std::sync::atomic::AtomicU64>) {
        let _ = self.sources.journal_dropped.set(counter);
    }

    /// Reports the outbox's depth for each of `sinks` from `store` from now on.
    pub fn watch_outbox(&self, store: Arc<crate::store::Store>, sinks: Vec<String>) {
        self.tally.expect_sinks(&sinks);
        let _ = self.sources.store.set((store, sinks));
    }

    /// One delivery to `sink`, with what went wrong if it was not sent.
    /// What the tally holds, with each sink's outbox depth and whether it
    /// is disabled read from the store.
    pub fn edges(&self) -> crate::tally::Edges {
        let mut edges = self.tally.edges();
        if let Some((store, _)) = self.sources.store.get() {
            for (sink, depth) in store.outbox_depths().unwrap_or_default() {
                edges.sinks.entry(sink).or_default().pending = depth;
            }
            for (sink, _) in store.disabled_sinks().unwrap_or_default() {
                if let Some(tally) = edges.sinks.get_mut(&sink) {
                    tally.disabled = true;
                }
            }
        }
        edges
    }

    pub fn outbox(&self, sink: &str, outcome: Delivery, error: Option<&str>) {
        self.tally.delivery(sink, outcome, error);
        let labels = SinkLabels { sink: sink.to_string() };
        let family = match outcome {
            Delivery::Sent => &self.outbox_sent,
            Delivery::Retried => &self.outbox_retried,
            Delivery::Dropped => &self.outbox_dropped,
        };
        family.get_or_create(&labels).inc();
    }

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn guest_call(&self, instance: &str, callback: &str, took: Duration) {
        let labels = CallLabels { instance: instance.to_string(), callback: callback.to_string() };
        self.guest_calls.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub fn order(&self, venue: &str, outcome: &str, took: Duration) {
        let labels = OrderLabels { venue: venue.to_string(), outcome: outcome.to_string() };
        self.orders.get_or_create(&labels).inc();
        self.router_requests.get_or_create(&VenueLabels { venue: venue.to_string() }).observe(took.as_secs_f64());
    }

    /// One inbound webhook request's answer; requests to no route count
    /// under one label, so strangers cannot grow the series.
    pub fn webhook(&self, route: &str, status: u16) {
        let route = if status == 404 { "(none)" } else { route };
        self.tally.webhook(route, status);
        self.webhooks.get_or_create(&RouteLabels { route: route.to_string(), status: status.to_string() }).inc();
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").field("gate", &self.gate.get().is_some()).finish_non_exhaustive()
    }
}

/// What `/health` already keeps, encoded at each scrape.
#[derive(Debug)]
struct StatusCollector {
    status: Arc<RwLock<HostStatus>>,
    sources: Arc<Sources>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    instance: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreachLabels {
    instance: String,
    cause: String,
}

/// One of an instance's counts in its status.
type InstanceCount = fn(&crate::engine::StrategyStatus) -> u64;

impl prometheus_client::collector::Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(status) = self.status.read() else { return Ok(()) };
        let per_instance: [(&str, &str, InstanceCount); 5] = [
            ("instance_bars", "Bars an instance processed", |s| s.bars),
            ("instance_orders", "Orders an instance placed", |s| s.orders),
            ("instance_fills", "Fills an instance heard of", |s| s.fills),
            ("instance_restarts", "Times an instance was restarted after a fault", |s| u64::from(s.restarts)),
            ("instance_bars_dropped", "Bars an instance missed because its queue was full", |s| s.bars_dropped),
        ];
        for (name, help, value) in per_instance {
            let mut family =
                encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
            for s in &status.strategies {
                let labels = InstanceLabels { instance: s.name.clone() };
                ConstCounter::new(value(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "instance_breaches",
            "Calls an instance faulted or broke a limit in, by cause",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for s in &status.strategies {
            let b = &s.breaches;
            let causes = [
                ("deadline", b.deadline),
                ("memory", b.memory),
                ("stack", b.stack),
                ("output", b.output),
                ("handles", b.handles),
                ("actions", b.actions),
                ("state", b.state),
                ("trap", b.trap),
                ("contract", b.contract),
                ("cpu", b.cpu),
                ("log", b.log),
                ("orders", b.orders),
            ];
            for (cause, count) in causes {
                let labels = BreachLabels { instance: s.name.clone(), cause: cause.to_string() };
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        let journal = encoder.encode_descriptor(
            "journal_dropped",
            "Journal lines dropped because the queue to the store was full",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        let dropped = self.sources.journal_dropped.get().map(|c| c.load(std::sync::atomic::Ordering::Relaxed));
        ConstCounter::new(dropped.unwrap_or(status.journal_dropped)).encode(journal)?;
        drop(status);
        if let Some((store, sinks)) = self.sources.store.get() {
            let mut family = encoder.encode_descriptor(
                "outbox_depth",
                "Notifications waiting to be delivered",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            let depths = store.outbox_depths().unwrap_or_default();
            for sink in sinks {
                let depth = depths.iter().find(|(s, _)| s == sink).map_or(0, |(_, d)| *d);
                ConstGauge::new(depth as i64).encode(family.encode_family(&SinkLabels { sink: sink.clone() })?)?;
            }
        }
        if let Some(gate) = self.sources.gate.get() {
            let mut family = encoder.encode_descriptor(
                "venue_trading_state",
                "Each venue's trading state: 0 active, 1 reducing only, 2 halted",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for venue in gate.venues() {
                let value: i64 = match venue.state {
                    TradingState::Active => 0,
                    TradingState::Reducing => 1,
                    TradingState::Halted => 2,
                };
                ConstGauge::new(value).encode(family.encode_family(&VenueLabels { venue: venue.venue.clone() })?)?;
            }
        }
        Ok(())
    }
}

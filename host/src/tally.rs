//! What the host's edges did lately, for `/health` and the dashboard:
//! inbound webhook answers per route, each sink's deliveries and its last
//! error, each feed's last error, and each venue's last sync.
//!
//! Written where the events happen (through [`crate::metrics::Metrics`],
//! which every edge already holds), read as one small copy: a few maps
//! behind one lock, never a store query, so `/health` stays cheap.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::bar::{Millis, now_ms};

/// The latest error of something that recovers, kept after it recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    pub message: String,
    /// When it happened, in ms since the epoch.
    pub at_ms: Millis,
}

impl LastError {
    /// `message` (cut to [`crate::runtime::bounded`]'s length), now.
    pub fn now(message: &str) -> Self {
        Self { message: crate::runtime::bounded(message), at_ms: now_ms() }
    }
}

/// One inbound webhook route's answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteTally {
    /// Recorded for the strategies (202).
    pub accepted: u64,
    /// Recognised as a delivery already recorded (200).
    pub duplicate: u64,
    /// Refused, by HTTP status.
    pub refused: BTreeMap<u16, u64>,
}

/// One notification sink's deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkTally {
    /// Waiting in the outbox (read from the store when shown).
    pub pending: u64,
    pub sent: u64,
    pub retried: u64,
    pub dropped: u64,
    /// A 410 turned it off (read from the store when shown).
    pub disabled: bool,
    pub last_error: Option<LastError>,
}

/// One feed's polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedTally {
    /// The time of the newest bar delivered.
    pub last_bar_ms: Option<Millis>,
    pub last_error: Option<LastError>,
    /// The venue's bar stream, when it has one: `listening` (connected, and
    /// trusted since the poll that followed went through) or `down`, with its
    /// last error.
    pub stream: Option<StreamState>,
    pub stream_error: Option<LastError>,
}

/// Whether the host's view of a venue agrees with the venue's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Not synced yet.
    #[default]
    Pending,
    /// The last sync went through.
    Synced,
    /// The last sync failed; it is tried again at the next interval.
    Failing,
}

/// One venue's reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncTally {
    pub state: SyncState,
    /// When the last sync went through.
    pub last_sync_ms: Option<Millis>,
    /// Differences found and corrected, since the start.
    pub corrections: u64,
    pub last_error: Option<LastError>,
    /// The venue's order-update stream, when it has one: `listening`
    /// (connected, and backfilled by the sync that followed) or `down`, with
    /// its last error.
    pub stream: Option<StreamState>,
    pub stream_error: Option<LastError>,
}

/// Whether a venue's stream is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    Listening,
    Down,
}

/// Everything tallied, as `/health` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Edges {
    /// By route; requests to no route count under `(none)`.
    pub webhooks: BTreeMap<String, RouteTally>,
    pub sinks: BTreeMap<String, SinkTally>,
    pub feeds: BTreeMap<String, FeedTally>,
    /// Each live venue's reconciliation, by venue.
    pub sync: BTreeMap<String, SyncTally>,
}

/// What became of one notification delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    Retried,
    Dropped,
}

/// The tallies, shared by the edges that write them and the routes that read them.
#[derive(Debug, Default)]
pub struct Tally {
    edges: Mutex<Edges>,
}

impl Tally {
    fn with<R>(&self, f: impl FnOnce(&mut Edges) -> R) -> R {
        let mut edges = self.edges.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut edges)
    }

    /// A copy of everything tallied.
    pub fn edges(&self) -> Edges {
        self.with(|e| e.clone())
    }

    /// Makes `sinks` known before their first delivery, so they are listed.
    pub fn expect_sinks(&self, sinks: &[String]) {
        self.with(|e| {
            for sink in sinks {
                e.sinks.entry(sink.clone()).or_default();
            }
        });
    }

    /// Makes `routes` known before their first request.
    pub fn expect_routes(&self, routes: &[String]) {
        self.with(|e| {
            for route in routes {
                e.webhooks.entry(route.clone()).or_default();
            }
        });
    }

    /// One webhook request's answer: 202 is accepted, 200 a duplicate,
    /// anything else refused.
    pub fn webhook(&self, route: &str, status: u16) {
        self.with(|e| {
            let tally = e.webhooks.entry(route.to_string()).or_default();
            match status {
                202 => tally.accepted += 1,
                200 => tally.duplicate += 1,
                _ => *tally.refused.entry(status).or_default() += 1,
            }
        });
    }

    /// One delivery to `sink`, with what went wrong if it was not sent.
    pub fn delivery(&self, sink: &str, outcome: Delivery, error: Option<&str>) {
        self.with(|e| {
            let tally = e.sinks.entry(sink.to_string()).or_default();
            match outcome {
                Delivery::Sent => tally.sent += 1,
                Delivery::Retried => tally.retried += 1,
                Delivery::Dropped => tally.dropped += 1,
            }
            if let Some(error) = error {
                tally.last_error = Some(LastError::now(error));
            }
        });
    }

    /// A batch of bars from `feed`, the newest at `newest`.
    pub fn bars(&self, feed: &str, newest: Millis) {
        self.with(|e| {
            let tally = e.feeds.entry(feed.to_string()).or_default();
            tally.last_bar_ms = Some(tally.last_bar_ms.map_or(newest, |t| t.max(newest)));
        });
    }

    /// A poll of `feed` that failed.
    pub fn feed_error(&self, feed: &str, error: &str) {
        self.with(|e| e.feeds.entry(feed.to_string()).or_default().last_error = Some(LastError::now(error)));
    }

    /// `feed`'s stream is listening (no error), or down with `error`.
    pub fn feed_stream(&self, feed: &str, error: Option<&str>) {
        self.with(|e| {
            let tally = e.feeds.entry(feed.to_string()).or_default();
            tally.stream = Some(if error.is_some() { StreamState::Down } else { StreamState::Listening });
            if let Some(error) = error {
                tally.stream_error = Some(LastError::now(error));
            }
        });
    }

    /// A sync with `venue` that went through, with the corrections it made.
    pub fn synced(&self, venue: &str, corrections: usize) {
        self.with(|e| {
            let tally = e.sync.entry(venue.to_string()).or_default();
            tally.state = SyncState::Synced;
            tally.last_sync_ms = Some(now_ms());
            tally.corrections += corrections as u64;
        });
    }

    /// `venue`'s stream is listening (no error), or down with `error`.
    pub fn stream(&self, venue: &str, error: Option<&str>) {
        self.with(|e| {
            let tally = e.sync.entry(venue.to_string()).or_default();
            tally.stream = Some(if error.is_some() { StreamState::Down } else { StreamState::Listening });
            if let Some(error) = error {
                tally.stream_error = Some(LastError::now(error));
            }
        });
    }

    /// A sync with `venue` that failed.
    pub fn sync_failed(&self, venue: &str, error: &str) {
        self.with(|e| {
            let tally = e.sync.entry(venue.to_string()).or_default();
            tally.state = SyncState::Failing;
            tally.last_error = Some(LastError::now(error));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_sort_into_accepted_duplicate_and_refused() {
        let tally = Tally::default();
        tally.expect_routes(&["quiet".into()]);
        for status in [202, 202, 200, 401, 401, 413] {
            tally.webhook("tv", status);
        }
        let edges = tally.edges();
        assert_eq!(edges.webhooks["quiet"], RouteTally::default());
        let tv = &edges.webhooks["tv"];
        assert_eq!((tv.accepted, tv.duplicate), (2, 1));
        assert_eq!(tv.refused, BTreeMap::from([(401, 2), (413, 1)]));
    }

    #[test]
    fn the_last_error_outlives_recovery_and_is_bounded() {
        let tally = Tally::default();
        tally.delivery("slack", Delivery::Retried, Some(&"x".repeat(100_000)));
        tally.delivery("slack", Delivery::Sent, None);
        let sink = &tally.edges().sinks["slack"];
        assert_eq!((sink.sent, sink.retried), (1, 1));
        let error = sink.last_error.as_ref().expect("kept after a success");
        assert!(error.message.len() < 1_000, "{}", error.message.len());

        tally.sync_failed("alpaca", "connection refused");
        assert_eq!(tally.edges().sync["alpaca"].state, SyncState::Failing);
        tally.synced("alpaca", 2);
        let venue = &tally.edges().sync["alpaca"];
        assert_eq!((venue.state, venue.corrections), (SyncState::Synced, 2));
        assert!(venue.last_error.is_some() && venue.last_sync_ms.is_some());
    }
}

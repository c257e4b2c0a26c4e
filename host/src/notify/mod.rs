//! Notifications out: Slack, Discord, signed JSON, Twilio SMS and email.
//!
//! Trading never waits on a notification: it only queues journal lines (see
//! [`crate::journal`]).
//! A pump turns new journal lines into outbox rows, one per matching sink,
//! and moves its cursor in the same transaction; a worker delivers due
//! rows, sinks side by side and each in order. 2XX is delivered; 429, 5XX
//! and transport failures are retried with exponential backoff and jitter,
//! honouring `Retry-After`, and hold that sink's later rows meanwhile (a
//! sink is gated by its oldest pending row, so nothing overtakes a held
//! one); 410 disables the sink, in the store, for the URL that answered it,
//! and journals `sink.disabled`; any other 4XX drops the notification and
//! counts it. A restart resumes from the outbox, disabled sinks included.

mod email;
mod sink;
mod text;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::bar::{Millis, format_time, now_ms};
use crate::store::{OutboxItem, Store, StoreError};
use crate::webhook::{Secret, SignatureError};
use email::Mailer;
pub use sink::{SinkConfig, SinkKind, SmtpTls};
pub use text::TRUNCATED;
use text::{cut, slack_escape, urlencode};

/// Journal lines read per pump.
const BATCH: usize = 500;
/// Discord refuses `content` over 2,000 characters.
const DISCORD_LIMIT: usize = 2000;
/// Twilio refuses a `Body` over 1,600 characters.
const SMS_LIMIT: usize = 1600;
/// Slack truncates `text` beyond 40,000 characters; we cut first, visibly.
const SLACK_LIMIT: usize = 40_000;

/// The subject of an email when its sink sets none.
const DEFAULT_SUBJECT: &str = "stratbox: {{ kind }}";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A sink cannot be set up: unreadable CA file, missing password, bad address.
    #[error("sink {sink}: {message}")]
    Sink { sink: String, message: String },
    /// A `*_env` key names a variable that is unset or not Unicode.
    #[error("sink {sink}: environment variable {var} ({what}) is not set")]
    Env { sink: String, var: String, what: &'static str, source: std::env::VarError },
    /// A `*_env` key names a variable that is set but empty.
    #[error("sink {sink}: environment variable {var} ({what}) is empty")]
    EmptyEnv { sink: String, var: String, what: &'static str },
    /// A json sink's secret, read from its variable, is not `whsec_` base64.
    #[error("sink {sink}: the secret in {var} is not usable")]
    Secret { sink: String, var: String, source: SignatureError },
    #[error("cannot read which sinks are disabled")]
    Store(#[from] StoreError),
}

/// Reads an environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<String, std::env::VarError>;

/// The value of the variable a sink's `*_env` key names, which must be set
/// and not empty.
fn env(lookup: EnvLookup, sink: &str, var: &str, what: &'static str) -> Result<String, NotifyError> {
    match lookup(var) {
        Ok(value) if value.trim().is_empty() => Err(NotifyError::EmptyEnv { sink: sink.into(), var: var.into(), what }),
        Ok(value) => Ok(value),
        Err(source) => Err(NotifyError::Env { sink: sink.into(), var: var.into(), what, source }),
    }
}

/// A sink's URL, hashed: what a 410 is remembered against.
fn url_sha256(url: &str) -> String {
    hex::encode(Sha256::digest(url.as_bytes()))
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Sent,
    /// Not now: a 429, a 5XX or no answer, `cause` says which.
    Retry {
        after: Option<Duration>,
        cause: String,
    },
    Gone,
    Drop {
        status: u16,
        cause: String,
    },
}

pub struct Notifier {
    /// With `url` and `secret` read from their variables where configured so.
    sinks: Vec<SinkConfig>,
    store: Arc<Store>,
    client: reqwest::Client,
    mailers: HashMap<String, Mailer>,
    /// Json sinks' signing keys.
    keys: HashMap<String, Secret>,
    /// Twilio sinks' auth tokens, read at start.
    tokens: HashMap<String, String>,
    disabled: Mutex<HashSet<String>>,
    /// Notifications dropped on a 4XX other than 410.
    pub dropped: AtomicU64,
    /// Delivered notifications.
    pub sent: AtomicU64,
    /// Backoff before the second attempt; doubles each time.
    pub base_backoff: Duration,
    /// Where deliveries are counted per sink.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

fn matches(filters: &[String], kind: &str) -> bool {
    filters.is_empty()
        || filters
            .iter()
            .any(|f| f == "*" || f == kind || f.strip_suffix('*').is_some_and(|prefix| kind.starts_with(prefix)))
}

impl Notifier {
    /// Counts deliveries per sink into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, sink: &str, outcome: crate::metrics::Delivery, error: Option<&str>) {
        if let Some(metrics) = &self.metrics {
            metrics.outbox(sink, outcome, error);
        }
    }

    /// Sets up every sink; fails on one that can never deliver, such as an
    /// email sink whose password variable is unset, a Twilio sink whose
    /// token variable is unset, or a `url_env` / `secret_env` naming an
    /// unset variable. Sinks a 410 disabled stay disabled unless their URL
    /// has changed since.
    pub fn new(sinks: Vec<SinkConfig>, store: Arc<Store>, client: reqwest::Client) -> Result<Self, NotifyError> {
        Self::with_env(sinks, store, client, &|var| std::env::var(var))
    }

    /// [`Notifier::new`] reading `*_env` variables through `lookup`.
    pub fn with_env(
        sinks: Vec<SinkConfig>,
        store: Arc<Store>,
        client: reqwest::Client,
        lookup: EnvLookup,
    ) -> Result<Self, NotifyError> {
        let mut sinks = sinks;
        let (mut keys, mut tokens) = (HashMap::new(), HashMap::new());
        for sink in &mut sinks {
            if let Some(var) = &sink.url_env {
                sink.url = env(lookup, &sink.name, var, "the sink's URL")?;
            }
            if let Some(var) = &sink.secret_env {
                sink.secret = Some(env(lookup, &sink.name, var, "the signing secret")?);
            }
            if sink.kind == SinkKind::Json {
                let var = sink.secret_env.clone().unwrap_or_else(|| "secret".into());
                let secret = Secret::parse(sink.secret.as_deref().unwrap_or_default())
                    .map_err(|source| NotifyError::Secret { sink: sink.name.clone(), var, source })?;
                keys.insert(sink.name.clone(), secret);
            }
            if sink.kind == SinkKind::Twilio {
                let var = sink.auth_token_env.as_deref().unwrap_or_default();
                tokens.insert(sink.name.clone(), env(lookup, &sink.name, var, "the Twilio auth token")?);
            }
        }
        let mailers = sinks
            .iter()
            .filter(|s| s.kind == SinkKind::Email)
            .map(|s| Ok((s.name.clone(), Mailer::new(s)?)))
            .collect::<Result<_, NotifyError>>()?;
        let gone = store.disabled_sinks()?;
        let disabled = sinks
            .iter()
            .filter(|s| gone.iter().any(|(name, hash)| *name == s.name && *hash == url_sha256(&s.url)))
            .map(|s| s.name.clone())
            .collect();
        Ok(Self {
            sinks,
            store,
            client,
            mailers,
            keys,
            tokens,
            disabled: Mutex::new(disabled),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            base_backoff: Duration::from_secs(1),
            metrics: None,
        })
    }

    /// Queues every journal line not yet seen for the sinks that want it.
    pub fn pump(&self) -> Result<usize, StoreError> {
        let mut queued = 0;
        loop {
            let cursor = self.store.notify_cursor()?;
            let events = self.store.events_after(cursor, BATCH)?;
            let Some(last) = events.last().map(|e| e.id) else { return Ok(queued) };
            let items: Vec<OutboxItem> = events
                .iter()
                .flat_map(|e| {
                    self.sinks.iter().filter(|s| matches(&s.events, &e.kind)).map(|s| OutboxItem {
                        id: 0,
                        sink: s.name.clone(),
                        event_id: e.id,
                        kind: e.kind.clone(),
                        time: e.time,
                        data: e.data.clone(),
                        attempts: 0,
                    })
                })
                .collect();
            queued += items.len();
            self.store.enqueue(&items, last)?;
        }
    }

    /// Tries the due notifications: sinks side by side, so a slow or
    /// failing one never holds up the others; each sink's in order, and
    /// the first that must be retried holds the rest of that sink's until
    /// its retry time.
    pub async fn deliver_due(&self, now: Millis) -> Result<usize, StoreError> {
        let due = self.store.due_notifications(now, BATCH)?;
        let count = due.len();
        let mut by_sink: Vec<(String, Vec<OutboxItem>)> = Vec::new();
        for item in due {
            match by_sink.iter_mut().find(|(sink, _)| *sink == item.sink) {
                Some((_, items)) => items.push(item),
                None => by_sink.push((item.sink.clone(), vec![item])),
            }
        }
        let rounds = by_sink.into_iter().map(|(_, items)| self.deliver_in_order(items, now));
        for result in futures_util::future::join_all(rounds).await {
            result?;
        }
        Ok(count)
    }

    /// Delivers one sink's due notifications, oldest first.
    async fn deliver_in_order(&self, items: Vec<OutboxItem>, now: Millis) -> Result<(), StoreError> {
        for item in items {
            use crate::metrics::Delivery;
            let Some(sink) = self.sinks.iter().find(|s| s.name == item.sink) else {
                self.store.settle_notification(item.id, "dropped", None)?;
                self.count(&item.sink, Delivery::Dropped, Some("no such sink is configured"));
                continue;
            };
            if self.disabled.lock().map(|d| d.contains(&sink.name)).unwrap_or(false) {
                self.store.settle_notification(item.id, "dropped", None)?;
                self.count(&sink.name, Delivery::Dropped, None);
                continue;
            }
            match self.send(sink, &item).await {
                Outcome::Sent => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    self.store.settle_notification(item.id, "sent", None)?;
                    self.count(&sink.name, Delivery::Sent, None);
                }
                Outcome::Retry { after, cause } => {
                    let wait = after.unwrap_or_else(|| self.backoff(item.attempts as u32 + 1));
                    let until = now + wait.as_millis() as Millis;
                    self.store.settle_notification(item.id, "pending", Some(until))?;
                    self.store.hold_sink(&sink.name, until)?;
                    self.count(&sink.name, Delivery::Retried, Some(&cause));
                    return Ok(());
                }
                Outcome::Gone => {
                    let reason = "the endpoint answered 410 Gone";
                    self.store.disable_sink(&sink.name, &url_sha256(&sink.url), reason, now)?;
                    if let Ok(mut disabled) = self.disabled.lock() {
                        disabled.insert(sink.name.clone());
                    }
                    self.store.settle_notification(item.id, "dropped", None)?;
                    self.count(&sink.name, Delivery::Dropped, Some(reason));
                    let data = serde_json::json!({ "sink": sink.name, "reason": reason });
                    self.store.append_event(now, "sink.disabled", None, &data.to_string())?;
                    tracing::error!(sink = %sink.name, "sink disabled: 410 Gone");
                }
                Outcome::Drop { status, cause } => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.store.settle_notification(item.id, "dropped", None)?;
                    self.count(&sink.name, Delivery::Dropped, Some(&cause));
                    tracing::warn!(sink = %sink.name, status, kind = %item.kind, "notification dropped");
                }
            }
        }
        Ok(())
    }

    /// Pumps and delivers every `every`, until dropped.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut interval = tokio::time::interval(every);
        loop {
            interval.tick().await;
            let now = now_ms();
            if let Err(error) = self.pump() {
                tracing::error!(%error, "cannot queue notifications");
            }
            if let Err(error) = self.deliver_due(now).await {
                tracing::error!(%error, "cannot deliver notifications");
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.base_backoff.saturating_mul(1 << attempt.min(12)).min(Duration::from_secs(600));
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(attempt);
        ceiling.mul_f64(0.5 + (hasher.finish() % 1000) as f64 / 2000.0)
    }

    /// The text of a notification: the sink's template for its kind, or
    /// `kind: data`.
    fn text(sink: &SinkConfig, item: &OutboxItem) -> String {
        Self::render(sink.templates.get(&item.kind).map_or("{{ kind }}: {{ data }}", String::as_str), item)
    }

    /// Renders a MiniJinja template over the notification's `kind`, `time`
    /// and `data`.
    fn render(template: &str, item: &OutboxItem) -> String {
        let data: serde_json::Value =
            serde_json::from_str(&item.data).unwrap_or(serde_json::Value::String(item.data.clone()));
        let context = minijinja::context! {
            kind => item.kind, time => format_time(item.time), data => text::template_value(&data),
        };
        minijinja::Environment::new()
            .render_str(template, context)
            .unwrap_or_else(|e| format!("{}: {} (template error: {e})", item.kind, item.data))
    }

    async fn send(&self, sink: &SinkConfig, item: &OutboxItem) -> Outcome {
        let text = Self::text(sink, item);
        let request = match sink.kind {
            SinkKind::Slack => {
                self.client.post(&sink.url).json(&serde_json::json!({ "text": slack_escape(&cut(&text, SLACK_LIMIT)) }))
            }
            // No mention in a strategy's text (`@everyone`, `<@id>`) pings anyone.
            SinkKind::Discord => self.client.post(&sink.url).json(&serde_json::json!({
                "content": cut(&text, DISCORD_LIMIT),
                "allowed_mentions": { "parse": [] },
            })),
            SinkKind::Json => {
                let data: serde_json::Value = serde_json::from_str(&item.data).unwrap_or(serde_json::Value::Null);
                let body = serde_json::json!({ "type": item.kind, "timestamp": format_time(item.time), "data": data })
                    .to_string();
                let id = format!("evt_{}", item.event_id);
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let Some(secret) = self.keys.get(&sink.name) else {
                    return Outcome::Drop { status: 0, cause: "no signing key".into() };
                };
                self.client
                    .post(&sink.url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", secret.sign(&id, timestamp, body.as_bytes()))
                    .body(body)
            }
            SinkKind::Twilio => {
                let sid = sink.account_sid.clone().unwrap_or_default();
                let token = self.tokens.get(&sink.name).map_or("", String::as_str);
                let url = format!("{}/2010-04-01/Accounts/{sid}/Messages.json", sink.url.trim_end_matches('/'));
                let auth = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
                let form = [
                    ("To", sink.to.clone().unwrap_or_default()),
                    ("From", sink.from.clone().unwrap_or_default()),
                    ("Body", cut(&text, SMS_LIMIT)),
                ];
                let body = form.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&");
                self.client
                    .post(url)
                    .header("authorization", format!("Basic {auth}"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            SinkKind::Email => {
                let Some(mailer) = self.mailers.get(&sink.name) else {
                    return Outcome::Drop { status: 0, cause: "no mailer".into() };
                };
                let subject = Self::render(sink.subject.as_deref().unwrap_or(DEFAULT_SUBJECT), item);
                return mailer.send(&subject, text).await;
            }
        };
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = crate::venue::retry_after(&response);
                match status {
                    200..=299 => Outcome::Sent,
                    410 => Outcome::Gone,
                    429 | 500..=599 => Outcome::Retry { after: retry_after, cause: format!("HTTP {status}") },
                    _ => Outcome::Drop { status, cause: format!("HTTP {status}") },
                }
            }
            Err(error) => Outcome::Retry { after: None, cause: connection_failure(&error) },
        }
    }
}

/// Why a request got no answer, without the sink's URL (it may hold a secret).
fn connection_failure(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut cause = None;
    while let Some(inner) = source {
        cause = Some(inner.to_string());
        source = inner.source();
    }
    match cause {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_kind_and_prefix() {
        let f = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches(&[], "fill"));
        assert!(matches(&f(&["order.*"]), "order.accepted"));
        assert!(!matches(&f(&["order.*"]), "fill"));
        assert!(matches(&f(&["fill", "risk.halted"]), "risk.halted"));
    }
}

//! Inbound webhooks on the host's HTTP listener.
//!
//! `POST /webhooks/tradingview/{route}` takes TradingView alerts and
//! `POST /webhooks/{name}` Standard Webhooks. Each delivery is checked in
//! this order: route, source address, size, content type (TradingView),
//! signature or passphrase, then the route's rate, content type
//! (Standard), JSON, fields, duplicate. A request refused before it is
//! authenticated spends a budget of its own (`unauthenticated_per_minute`),
//! never the route's, so knowing the URL is not enough to crowd out real
//! alerts. Anything refused is counted and logged (never with its secret)
//! and changes nothing else; every 429 and 503 says `Retry-After`.
//!
//! An accepted delivery is written to the store's inbox, payload included,
//! in the transaction that records its dedup key, and only then answered
//! 202; a delivery refused for any reason (503 included) leaves no key, so
//! its retry is taken. The dispatcher (see `inbox`) acts on it afterwards,
//! so a slow strategy never makes the sender time out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::limit::retry_after_secs;
use super::{Alert, AlertError, Inbound, Secret, SignatureError, parse_order, verify};
use super::{WebhookAction, WebhookConfig, WebhookKind};
use crate::bar::{Millis, now_ms};
use crate::rate_limit::RateLimiter;
use crate::store::{Intake, Store};

/// Deliveries the inbox holds before new ones are answered 503.
pub const INBOX_CAPACITY: usize = 1024;
/// What a 503 asks the sender to wait.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Why the intake cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook route {route}: environment variable {var} ({what}) is not set")]
    Env { route: String, var: String, what: &'static str, source: std::env::VarError },
    #[error("webhook route {route}: environment variable {var} ({what}) is empty")]
    EmptyEnv { route: String, var: String, what: &'static str },
    #[error("webhook route {route}: a secret in {var} is not usable")]
    Secret { route: String, var: String, source: SignatureError },
}

/// Reads an environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<String, std::env::VarError>;

struct Route {
    config: WebhookConfig,
    secrets: Vec<Secret>,
    passphrase: String,
    limiter: RateLimiter,
    unauthenticated: RateLimiter,
}

/// The configured routes, the store that keeps deliveries, and the bell
/// that wakes the dispatcher.
pub struct WebhookIntake {
    routes: HashMap<(WebhookKind, String), Route>,
    store: Arc<Store>,
    wake: Arc<Notify>,
    /// Deliveries the inbox may hold before new ones are answered 503.
    pub capacity: usize,
    /// Deliveries refused, for `/health` and logs.
    pub refused: AtomicU64,
    /// Clock in unix milliseconds; tests fix it.
    pub now: fn() -> Millis,
    /// Where each request's answer is counted, by route and status.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl WebhookIntake {
    /// Counts each request's answer into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, route: &str, response: &Response) {
        if let Some(metrics) = &self.metrics {
            metrics.webhook(route, response.status().as_u16());
        }
    }
}

fn read_env(lookup: EnvLookup, route: &str, var: &str, what: &'static str) -> Result<String, WebhookError> {
    match lookup(var) {
        Ok(value) if value.trim().is_empty() => {
            Err(WebhookError::EmptyEnv { route: route.into(), var: var.into(), what })
        }
        Ok(value) => Ok(value),
        Err(source) => Err(WebhookError::Env { route: route.into(), var: var.into(), what, source }),
    }
}

fn reply(status: StatusCode, body: serde_json::Value, retry_after: Option<Duration>) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(wait) = retry_after {
        response.headers_mut().insert("retry-after", retry_after_secs(wait).into());
    }
    response
}

impl WebhookIntake {
    /// Sets up the routes (validated with the config), reading `*_env`
    /// variables from the environment: an unset one stops the start.
    pub fn new(configs: &[WebhookConfig], store: Arc<Store>) -> Result<Self, WebhookError> {
        Self::with_env(configs, store, &|var| std::env::var(var))
    }

    /// [`WebhookIntake::new`] reading variables through `lookup`.
    pub fn with_env(configs: &[WebhookConfig], store: Arc<Store>, lookup: EnvLookup) -> Result<Self, WebhookError> {
        let mut routes = HashMap::new();
        for c in configs {
            let mut texts = c.secrets.clone();
            let var = c.secrets_env.clone().unwrap_or_else(|| "secrets".into());
            if let Some(env) = &c.secrets_env {
                let value = read_env(lookup, &c.name, env, "the route's whsec_ secrets")?;
                texts = value.split([' ', ',', '\n', '\t']).filter(|s| !s.is_empty()).map(String::from).collect();
            }
            let secrets = texts
                .iter()
                .map(|s| Secret::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| WebhookError::Secret { route: c.name.clone(), var: var.clone(), source })?;
            let passphrase = match &c.passphrase_env {
                Some(env) => read_env(lookup, &c.name, env, "the route's passphrase")?,
                None => c.passphrase.clone().unwrap_or_default(),
            };
            let route = Route {
                config: c.clone(),
                secrets,
                passphrase,
                limiter: RateLimiter::new(c.per_minute),
                unauthenticated: RateLimiter::new(c.unauthenticated_per_minute),
            };
            routes.insert((c.kind, c.name.clone()), route);
        }
        Ok(Self {
            routes,
            store,
            wake: Arc::new(Notify::new()),
            capacity: INBOX_CAPACITY,
            refused: AtomicU64::new(0),
            metrics: None,
            now: now_ms,
        })
    }

    /// Notified on each accepted delivery; the dispatcher waits on it.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn refuse(&self, route: &str, status: StatusCode, reason: &str, retry_after: Option<Duration>) -> Response {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(route, status = status.as_u16(), reason, "webhook refused");
        reply(status, serde_json::json!({ "error": reason }), retry_after)
    }

    /// Refuses a request not (yet) known to come from the route's sender:
    /// with `status` while the unauthenticated budget lasts, 429 after.
    fn refuse_stranger(&self, route: &Route, status: StatusCode, reason: &str) -> Response {
        match route.unauthenticated.take() {
            Ok(()) => self.refuse(&route.config.name, status, reason, None),
            Err(wait) => {
                self.refuse(&route.config.name, StatusCode::TOO_MANY_REQUESTS, "too many refused requests", Some(wait))
            }
        }
    }

    async fn handle(&self, kind: WebhookKind, name: &str, request: Request) -> Response {
        let Some(route) = self.routes.get(&(kind, name.to_string())) else {
            return self.refuse(name, StatusCode::NOT_FOUND, "no such webhook route", None);
        };
        let config = &route.config;
        if !config.allow_ips.is_empty() {
            let peer: Option<IpAddr> = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
            if !peer.is_some_and(|ip| config.allow_ips.contains(&ip)) {
                return self.refuse_stranger(route, StatusCode::FORBIDDEN, "source address not allowed");
            }
        }
        let (parts, body) = request.into_parts();
        let body = match axum::body::to_bytes(body, config.max_body_bytes).await {
            Ok(body) => body,
            Err(_) => return self.refuse_stranger(route, StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
        };
        let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let now = (self.now)();
        let (key, window_secs, inbound) = match kind {
            WebhookKind::Tradingview => {
                // TradingView sends JSON alerts as application/json, anything else as text/plain.
                if media != "application/json" && media != "text/plain" {
                    let reason = "expected application/json or text/plain";
                    return self.refuse_stranger(route, StatusCode::UNSUPPORTED_MEDIA_TYPE, reason);
                }
                let alert = match Alert::parse(&body, &route.passphrase) {
                    Ok(alert) => alert,
                    Err(AlertError::BadPassphrase) => {
                        return self.refuse_stranger(route, StatusCode::UNAUTHORIZED, "bad passphrase");
                    }
                    Err(error) => return self.refuse_stranger(route, StatusCode::BAD_REQUEST, &error.to_string()),
                };
                if let Err(wait) = route.limiter.take() {
                    return self.refuse(name, StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded", Some(wait));
                }
                let (key, window) = tradingview_key(&alert, &body, config);
                let inbound = match config.action {
                    WebhookAction::Signal => Action::Signal(alert.payload()),
                    WebhookAction::Order => match alert.order() {
                        Ok(order) => Action::Order(order),
                        Err(e) => return self.refuse(name, StatusCode::UNPROCESSABLE_ENTITY, &e.to_string(), None),
                    },
                };
                (key, window, inbound)
            }
            WebhookKind::Standard => {
                let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
                if let Err(error) = verify(
                    &route.secrets,
                    header("webhook-id"),
                    header("webhook-timestamp"),
                    header("webhook-signature"),
                    &body,
                    now / 1000,
                ) {
                    return self.refuse_stranger(route, StatusCode::UNAUTHORIZED, &error.to_string());
                }
                if let Err(wait) = route.limiter.take() {
                    return self.refuse(name, StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded", Some(wait));
                }
                if media != "application/json" {
                    let reason = "expected application/json";
                    return self.refuse(name, StatusCode::UNSUPPORTED_MEDIA_TYPE, reason, None);
                }
                let inbound = match config.action {
                    WebhookAction::Signal => match serde_json::from_slice::<serde_json::Value>(&body) {
                        Ok(_) => Action::Signal(String::from_utf8_lossy(&body).into_owned()),
                        Err(e) => {
                            return self.refuse(name, StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}"), None);
                        }
                    },
                    WebhookAction::Order => match parse_order(&body) {
                        Ok(order) => Action::Order(order),
                        Err(e @ AlertError::Malformed(_)) => {
                            return self.refuse(name, StatusCode::BAD_REQUEST, &e.to_string(), None);
                        }
                        Err(e) => return self.refuse(name, StatusCode::UNPROCESSABLE_ENTITY, &e.to_string(), None),
                    },
                };
                // verify() succeeded, so the header is there. Kept as sent,
                // as before the inbox, so retries across an upgrade still match.
                (header("webhook-id").unwrap_or_default().to_string(), config.dedup_window_secs, inbound)
            }
        };
        let rows: Vec<(String, String)> = config
            .strategies
            .iter()
            .map(|strategy| {
                let inbound = inbound.to_inbound(name, strategy);
                (strategy.clone(), inbound.encode())
            })
            .collect();
        let expires = now.saturating_add((window_secs as Millis).saturating_mul(1000));
        match self.store.accept_delivery(name, &key, now, expires, &rows, self.capacity) {
            Ok(Intake::Accepted) => {
                self.wake.notify_one();
                reply(StatusCode::ACCEPTED, serde_json::json!({ "status": "accepted" }), None)
            }
            Ok(Intake::Duplicate) => reply(StatusCode::OK, serde_json::json!({ "status": "duplicate" }), None),
            Ok(Intake::Full) => {
                self.refuse(name, StatusCode::SERVICE_UNAVAILABLE, "busy; nothing was recorded", Some(BUSY_RETRY))
            }
            Err(error) => {
                tracing::error!(%error, "cannot record a webhook delivery");
                let reason = "cannot record the delivery; nothing was recorded";
                self.refuse(name, StatusCode::SERVICE_UNAVAILABLE, reason, Some(BUSY_RETRY))
            }
        }
    }
}

/// What a delivery asks for, before it is addressed to each strategy.
enum Action {
    Signal(String),
    Order(super::AlertOrder),
}

impl Action {
    fn to_inbound(&self, route: &str, strategy: &str) -> Inbound {
        let (route, strategy) = (route.to_string(), strategy.to_string());
        match self {
            Action::Signal(payload) => Inbound::Signal { route, strategy, payload: payload.clone() },
            Action::Order(order) => Inbound::Order { route, strategy, order: order.clone() },
        }
    }
}

/// A TradingView alert's dedup key and how long it is kept. `{{timenow}}`
/// (when the alert fired) with the order id, ticker and action names one
/// firing exactly, and is kept `dedup_window_secs`; without `timenow` the
/// body's hash is all there is, kept only `body_dedup_window_secs`, so
/// the same text firing again later acts again.
fn tradingview_key(alert: &Alert, body: &[u8], config: &WebhookConfig) -> (String, u64) {
    match &alert.timenow {
        Some(timenow) if !timenow.trim().is_empty() => {
            let s = &alert.strategy;
            let parts =
                [Some(timenow.trim()), s.order_id.as_deref(), alert.ticker.as_deref(), s.order_action.as_deref()];
            // JSON-encoded, so no choice of field text can collide with another.
            let key = serde_json::to_string(&parts).unwrap_or_default();
            (format!("tv:{key}"), config.dedup_window_secs)
        }
        _ => (format!("body:{}", hex::encode(Sha256::digest(body))), config.body_dedup_window_secs),
    }
}

/// `POST /webhooks/tradingview/{route}`.
pub async fn tradingview(
    State(intake): State<Arc<WebhookIntake>>,
    Path(route): Path<String>,
    request: Request<Body>,
) -> Response {
    let response = intake.handle(WebhookKind::Tradingview, &route, request).await;
    intake.count(&route, &response);
    response
}

/// `POST /webhooks/{name}`.
pub async fn standard(
    State(intake): State<Arc<WebhookIntake>>,
    Path(name): Path<String>,
    request: Request<Body>,
) -> Response {
    let response = intake.handle(WebhookKind::Standard, &name, request).await;
    intake.count(&name, &response);
    response
}

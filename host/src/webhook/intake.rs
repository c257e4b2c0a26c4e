//! Inbound webhooks on the host's HTTP listener.
//!
//! `POST /webhooks/tradingview/{route}` takes TradingView alerts and
//! `POST /webhooks/{name}` Standard Webhooks. Each delivery is checked in
//! this order: route, source address, rate, size, content type, signature
//! or passphrase, JSON, duplicate. Anything refused is counted and logged
//! (never with its secret) and changes nothing else. An accepted delivery
//! is recorded as seen, queued, and acknowledged at once with 202; the host
//! acts on it afterwards, so a slow strategy never makes TradingView time out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Alert, AlertOrder, Secret, verify};
use crate::bar::{Millis, now_ms};
use crate::config::{WebhookAction, WebhookConfig, WebhookKind};
use crate::router::RateLimiter;
use crate::store::Store;

/// Something an accepted delivery asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Deliver `payload` to the named strategies' `on-signal`.
    Signal { route: String, strategies: Vec<String>, payload: String },
    /// Place an order for `strategy`, through the usual risk checks.
    Order { route: String, strategy: String, order: AlertOrder },
}

struct Route {
    config: WebhookConfig,
    secrets: Vec<Secret>,
    limiter: RateLimiter,
}

/// The configured routes, the dedup store and the queue to the host.
pub struct WebhookIntake {
    routes: HashMap<(WebhookKind, String), Route>,
    store: Arc<Store>,
    queue: mpsc::Sender<Inbound>,
    /// Deliveries refused, for `/health` and logs.
    pub refused: AtomicU64,
    /// Clock in unix milliseconds; tests fix it.
    pub now: fn() -> Millis,
}

impl WebhookIntake {
    /// `configs` were validated with the config, so secrets parse.
    pub fn new(configs: &[WebhookConfig], store: Arc<Store>, queue: mpsc::Sender<Inbound>) -> Self {
        let routes = configs
            .iter()
            .map(|c| {
                let secrets = c.secrets.iter().filter_map(|s| Secret::parse(s).ok()).collect();
                (
                    (c.kind, c.name.clone()),
                    Route { config: c.clone(), secrets, limiter: RateLimiter::new(c.per_minute) },
                )
            })
            .collect();
        Self { routes, store, queue, refused: AtomicU64::new(0), now: now_ms }
    }

    fn refuse(&self, route: &str, status: StatusCode, reason: &str) -> Response {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(route, status = status.as_u16(), reason, "webhook refused");
        (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
    }

    async fn handle(&self, kind: WebhookKind, name: &str, request: Request) -> Response {
        let Some(route) = self.routes.get(&(kind, name.to_string())) else {
            return self.refuse(name, StatusCode::NOT_FOUND, "no such webhook route");
        };
        let config = &route.config;
        if !config.allow_ips.is_empty() {
            let peer: Option<IpAddr> = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
            if !peer.is_some_and(|ip| config.allow_ips.contains(&ip)) {
                return self.refuse(name, StatusCode::FORBIDDEN, "source address not allowed");
            }
        }
        if !route.limiter.try_acquire() {
            return self.refuse(name, StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
        }
        let (parts, body) = request.into_parts();
        let body = match axum::body::to_bytes(body, config.max_body_bytes).await {
            Ok(body) => body,
            Err(_) => return self.refuse(name, StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
        };
        let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let now = (self.now)();
        let (key, inbound) = match kind {
            WebhookKind::Tradingview => {
                // TradingView sends JSON alerts as application/json, anything else as text/plain.
                if media != "application/json" && media != "text/plain" {
                    return self.refuse(
                        name,
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "expected application/json or text/plain",
                    );
                }
                let passphrase = config.passphrase.as_deref().unwrap_or_default();
                let alert = match Alert::parse(&body, passphrase) {
                    Ok(alert) => alert,
                    Err(super::AlertError::BadPassphrase) => {
                        return self.refuse(name, StatusCode::UNAUTHORIZED, "bad passphrase");
                    }
                    Err(error) => return self.refuse(name, StatusCode::BAD_REQUEST, &error.to_string()),
                };
                let key = match (&alert.strategy.order_id, &alert.time) {
                    (Some(id), Some(time)) => format!("{id}@{time}"),
                    _ => hex::encode(Sha256::digest(&body)),
                };
                let inbound = match self.action(config, &alert) {
                    Ok(inbound) => inbound,
                    Err(reason) => return self.refuse(name, StatusCode::UNPROCESSABLE_ENTITY, &reason),
                };
                (key, inbound)
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
                    return self.refuse(name, StatusCode::UNAUTHORIZED, &error.to_string());
                }
                if media != "application/json" {
                    return self.refuse(name, StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected application/json");
                }
                if let Err(error) = serde_json::from_slice::<serde_json::Value>(&body) {
                    return self.refuse(name, StatusCode::BAD_REQUEST, &format!("malformed JSON: {error}"));
                }
                let payload = String::from_utf8_lossy(&body).into_owned();
                let inbound = Inbound::Signal { route: name.into(), strategies: config.strategies.clone(), payload };
                (header("webhook-id").unwrap_or_default().to_string(), inbound)
            }
        };
        match self.store.first_delivery(name, &key, now) {
            Ok(true) => {}
            Ok(false) => {
                return (StatusCode::OK, axum::Json(serde_json::json!({ "status": "duplicate" }))).into_response();
            }
            Err(error) => {
                tracing::error!(%error, "cannot record a webhook delivery");
                return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "error": "try again" })))
                    .into_response();
            }
        }
        if self.queue.try_send(inbound).is_err() {
            tracing::error!(route = name, "webhook queue full; delivery dropped after recording");
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "error": "busy" })))
                .into_response();
        }
        (StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "status": "accepted" }))).into_response()
    }

    fn action(&self, config: &WebhookConfig, alert: &Alert) -> Result<Inbound, String> {
        match config.action {
            WebhookAction::Signal => Ok(Inbound::Signal {
                route: config.name.clone(),
                strategies: config.strategies.clone(),
                payload: alert.payload(),
            }),
            WebhookAction::Order => {
                let order = alert.order().map_err(|e| e.to_string())?;
                let strategy = config.strategies.first().cloned().unwrap_or_default();
                Ok(Inbound::Order { route: config.name.clone(), strategy, order })
            }
        }
    }
}

/// `POST /webhooks/tradingview/{route}`.
pub async fn tradingview(
    State(intake): State<Arc<WebhookIntake>>,
    Path(route): Path<String>,
    request: Request<Body>,
) -> Response {
    intake.handle(WebhookKind::Tradingview, &route, request).await
}

/// `POST /webhooks/{name}`.
pub async fn standard(
    State(intake): State<Arc<WebhookIntake>>,
    Path(name): Path<String>,
    request: Request<Body>,
) -> Response {
    intake.handle(WebhookKind::Standard, &name, request).await
}

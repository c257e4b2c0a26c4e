//! The host's HTTP API: `/health` (open), inbound webhooks (each route
//! authenticates its own), and the control API under `/api/v1` (a bearer
//! token; see [`auth`]).

mod auth;
mod control;
mod dashboard;
mod session;

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use self::auth::{Access, ApiToken, AuthError, TOKEN_VARIABLE};
pub use self::dashboard::Snapshots;
pub use self::session::Sessions;
use crate::engine::{HostStatus, Instances};
use crate::risk::{RiskGate, TradingState};
use crate::webhook::{WebhookIntake, standard_route, tradingview_route};

/// Shared state behind the routes.
#[derive(Clone)]
pub struct AppState {
    pub status: Arc<RwLock<HostStatus>>,
    /// Inbound webhook routes, when any are configured.
    pub webhooks: Option<Arc<WebhookIntake>>,
    /// Each live venue's trading state.
    pub gate: Option<RiskGate>,
    /// The running instances, for the control API.
    pub instances: Instances,
    /// What the control API and the dashboard ask of their callers.
    pub access: Access,
    /// The live venue's orders and fills, when trading one.
    pub ledger: Option<Ledger>,
    /// What `/metrics` serves.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Prices and PnL over time, for the dashboard's charts.
    pub tape: Arc<crate::tape::Tape>,
    /// The store whose journal the dashboard tails, when the host keeps one.
    pub journal: Option<Arc<crate::store::Store>>,
    /// Turns true when the host stops: long-lived responses (the
    /// dashboard's event stream) end then.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// The dashboard's latest snapshot, shared by its open pages.
    pub snapshots: Arc<Snapshots>,
}

/// A live venue's records, as the control API reads them.
#[derive(Clone)]
pub struct Ledger {
    pub store: Arc<crate::store::Store>,
    pub venue: &'static str,
}

/// The router, separate from the listener so tests can call it directly.
pub fn app(state: AppState) -> Router {
    let webhooks = state.webhooks.clone();
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(control::routes(&state))
        .merge(dashboard::routes(&state))
        .with_state(state);
    match webhooks {
        Some(intake) => router.merge(
            Router::new()
                .route("/webhooks/tradingview/{route}", post(tradingview_route))
                .route("/webhooks/{name}", post(standard_route))
                .with_state(intake),
        ),
        None => router,
    }
}

/// An error that tells the client what went wrong without leaking internals.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    message: std::borrow::Cow<'static, str>,
}

impl AppError {
    fn new(status: StatusCode, message: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self { status, message: message.into() }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// The Prometheus scrape: OpenMetrics text, open like `/health`.
async fn metrics(State(state): State<AppState>) -> Response {
    let headers = [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")];
    (headers, state.metrics.render()).into_response()
}

/// `200` with `"status": "ok"` while every strategy runs and every venue
/// trades and syncs, `"degraded"` once a strategy has failed, a venue is
/// not active or its last sync failed; the body lists each strategy, each
/// venue's trading state and sync, webhook intake per route, deliveries per
/// sink and each feed, with their last errors.
async fn health(State(state): State<AppState>) -> Result<Json<HostStatus>, AppError> {
    host_status(&state).map(Json)
}

/// What `/health` shows.
fn host_status(state: &AppState) -> Result<HostStatus, AppError> {
    let mut status = state
        .status
        .read()
        .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "status unavailable"))?
        .clone();
    status.edges = state.metrics.edges();
    if let Some(gate) = &state.gate {
        status.venues = gate.venues();
    }
    let failing = status.edges.sync.values().any(|s| s.state == crate::tally::SyncState::Failing);
    if failing || status.venues.iter().any(|v| v.state != TradingState::Active) {
        status.status = "degraded".into();
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StrategyStatus;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state(status: Arc<RwLock<HostStatus>>) -> AppState {
        AppState {
            status,
            webhooks: None,
            gate: None,
            instances: Instances::default(),
            access: Access { token: ApiToken::Open, sessions: Sessions::default() },
            ledger: None,
            metrics: crate::metrics::Metrics::detached(),
            tape: Arc::default(),
            journal: None,
            closing: tokio::sync::watch::channel(false).1,
            snapshots: Arc::default(),
        }
    }

    #[tokio::test]
    async fn health_reports_each_strategy() {
        let status = Arc::new(RwLock::new(HostStatus::default()));
        status.write().unwrap().set(StrategyStatus {
            name: "sma".into(),
            state: crate::control::InstanceState::Running,
            ..Default::default()
        });
        let response =
            app(state(status.clone())).oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["strategies"][0]["name"], "sma");

        status.write().unwrap().set(StrategyStatus {
            name: "sma".into(),
            state: crate::control::InstanceState::Failed,
            ..Default::default()
        });
        let response = app(state(status)).oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["status"], "degraded");
    }

    #[tokio::test]
    async fn unknown_routes_are_404() {
        let response = app(state(Arc::new(RwLock::new(HostStatus::default()))))
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}

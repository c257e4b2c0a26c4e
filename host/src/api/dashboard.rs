//! The live dashboard at `/`: one page of plain HTML, CSS and JavaScript,
//! embedded in the binary, that draws what the host is doing and drives the
//! control API.
//!
//! - `GET /`: the page, for a caller the control API admits (anyone, with
//!   no token on loopback; otherwise a signed-in browser), else the sign-in
//!   form. `POST /login` takes the token from that form and sets an
//!   HttpOnly session cookie ([`super::session`]); `POST /logout` ends it.
//!   The token never appears in a URL.
//! - `GET /api/v1/dashboard`: everything the page shows, as JSON.
//! - `GET /api/v1/events`: the same, pushed as server-sent events: a
//!   `snapshot` event whenever it changed (checked every
//!   [`PUSH_EVERY`]; one snapshot is built per tick and shared by every open
//!   page), and a `journal` event with each batch of new journal lines.
//!   Streams end when the host stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde::Deserialize;

use super::auth::{ApiToken, foreign, require};
use super::{AppError, AppState, control};
use crate::store::JournalEntry;

/// How often a stream checks for changes.
pub const PUSH_EVERY: Duration = Duration::from_millis(500);

/// Journal lines a page is sent when it opens.
const RECENT: usize = 50;

/// Fills the page marks on its chart (it lists the newest 15).
const FILLS: usize = 500;

/// Working orders the page lists.
const ORDERS: usize = 200;

const PAGE: &str = include_str!("../../assets/dashboard/index.html");
const LOGIN: &str = include_str!("../../assets/dashboard/login.html");
const SCRIPT: &str = include_str!("../../assets/dashboard/app.js");
const STYLE: &str = include_str!("../../assets/dashboard/app.css");

pub(super) fn routes(state: &AppState) -> Router<AppState> {
    let api = Router::new()
        .route("/api/v1/dashboard", get(dashboard))
        .route("/api/v1/events", get(events))
        .route_layer(middleware::from_fn_with_state(state.access.clone(), require));
    Router::new()
        .route("/", get(page))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/assets/app.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .layer(DefaultBodyLimit::max(4 << 10))
        .merge(api)
}

/// What every page is served with: scripts and styles from this host only,
/// never framed (its buttons cannot be clicked through another site's page).
fn page_headers() -> [(header::HeaderName, HeaderValue); 5] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // Not `no-referrer`: under it a form's POST carries `Origin: null`,
        // which the sign-in refuses as another site's.
        (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

/// Whether `headers` are of a caller the control API admits to read.
fn admitted(state: &AppState, headers: &HeaderMap) -> bool {
    match &state.access.token {
        ApiToken::Open => true,
        ApiToken::Bearer { .. } => state.access.sessions.admits(headers),
    }
}

async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if admitted(&state, &headers) {
        (page_headers(), PAGE).into_response()
    } else {
        (page_headers(), LOGIN.replace("{{error}}", "")).into_response()
    }
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /login`, the form's `token`: a session cookie and back to `/`, or
/// the form again with 401.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    let open = matches!(state.access.token, ApiToken::Open);
    if let Some(why) = foreign(&headers, open) {
        return AppError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    let offered = match form {
        Ok(Form(SignIn { token })) => token,
        Err(rejection) => return AppError::new(rejection.status(), "the form needs a token").into_response(),
    };
    if open {
        return Redirect::to("/").into_response();
    }
    if !state.access.token.is(&offered) {
        let again =
            LOGIN.replace("{{error}}", "<p class=\"error\" id=\"login-error\">That token is not this host's.</p>");
        return (StatusCode::UNAUTHORIZED, page_headers(), again).into_response();
    }
    match state.access.sessions.start() {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot start a dashboard session");
            AppError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot start a session").into_response()
        }
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(why) = foreign(&headers, matches!(state.access.token, ApiToken::Open)) {
        return AppError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    ([(header::SET_COOKIE, state.access.sessions.end(&headers))], Redirect::to("/")).into_response()
}

/// Everything the page shows but the journal.
fn snapshot(state: &AppState) -> Result<serde_json::Value, AppError> {
    let host = super::host_status(state)?;
    let mut orders = control::working_orders(state, None)?;
    if let Some(list) = orders.get_mut("orders").and_then(|o| o.as_array_mut()) {
        list.truncate(ORDERS);
    }
    let charts = state.tape.charts(&host);
    Ok(serde_json::json!({
        "host": host,
        "orders": orders,
        "fills": control::recent_fills(state, None, FILLS)?,
        "positions": control::books(state)?,
        "charts": charts,
        "journal": state.journal.is_some(),
    }))
}

async fn dashboard(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    snapshot(&state).map(Json)
}

/// The latest snapshot's text, shared by every open page: however many
/// pages are open, the host reads the store and builds it once a tick.
#[derive(Debug, Default)]
pub struct Snapshots {
    latest: std::sync::Mutex<Option<(tokio::time::Instant, Arc<str>)>>,
}

impl Snapshots {
    /// The snapshot of `state`, built anew when the one kept is older than
    /// most of a tick.
    fn get(&self, state: &AppState) -> Result<Arc<str>, AppError> {
        let mut latest = self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, text)) = latest.as_ref()
            && at.elapsed() < PUSH_EVERY * 4 / 5
        {
            return Ok(text.clone());
        }
        let text: Arc<str> = snapshot(state)?.to_string().into();
        *latest = Some((tokio::time::Instant::now(), text.clone()));
        Ok(text)
    }
}

/// What one stream has sent so far.
struct Cursor {
    state: AppState,
    /// Turns true when the host stops.
    closing: tokio::sync::watch::Receiver<bool>,
    /// The snapshot sent last.
    last: Arc<str>,
    journal_after: Option<i64>,
    first: bool,
}

impl Cursor {
    /// The journal lines not sent yet (the newest [`RECENT`] the first time).
    fn journal(&mut self) -> Vec<JournalEntry> {
        let Some(store) = &self.state.journal else { return Vec::new() };
        let lines = match self.journal_after {
            None => store.latest_events(RECENT),
            Some(after) => store.events_after(after, RECENT),
        };
        let lines = lines.unwrap_or_default();
        if let Some(last) = lines.last() {
            self.journal_after = Some(last.id);
        } else if self.journal_after.is_none() {
            self.journal_after = Some(0);
        }
        lines
    }

    /// The next events to send: the snapshot when it changed, new journal lines.
    fn next(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let lines = self.journal();
        if !lines.is_empty() || self.first {
            let lines: Vec<serde_json::Value> = lines
                .iter()
                .map(|l| {
                    let data = serde_json::from_str::<serde_json::Value>(&l.data).unwrap_or(serde_json::Value::Null);
                    serde_json::json!({ "id": l.id, "time_ms": l.time, "kind": l.kind, "venue": l.venue, "data": data })
                })
                .collect();
            events.push(Event::default().event("journal").data(serde_json::Value::from(lines).to_string()));
        }
        if let Ok(text) = self.state.snapshots.get(&self.state)
            && !Arc::ptr_eq(&text, &self.last)
            && *text != *self.last
        {
            events.push(Event::default().event("snapshot").data(&*text));
            self.last = text;
        }
        self.first = false;
        events
    }
}

/// `GET /api/v1/events`: see the module's documentation.
async fn events(State(state): State<AppState>) -> impl IntoResponse {
    let closing = state.closing.clone();
    let cursor = Cursor { state, closing, last: Arc::from(""), journal_after: None, first: true };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if !cursor.first {
                tokio::select! {
                    () = tokio::time::sleep(PUSH_EVERY) => {}
                    // Stopping (or the host is gone): the stream ends, so a
                    // graceful stop never waits on an open page.
                    _ = cursor.closing.changed() => return None,
                }
            }
            if *cursor.closing.borrow() {
                return None;
            }
            let events = cursor.next();
            if !events.is_empty() {
                return Some((futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>)), cursor));
            }
        }
    });
    let headers = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    (headers, Sse::new(futures_util::StreamExt::flatten(stream)).keep_alive(KeepAlive::default()))
}

//! `/api/v1`: the operator's control of a running host, in JSON.
//!
//! - `GET /api/v1/instances`, `GET /api/v1/instances/{name}`: what
//!   `/health` says of each instance;
//! - `POST /api/v1/instances/{name}/pause` and `.../resume`: pause stops
//!   calling the strategy (its orders still fill; fills, signals and
//!   webhook orders wait for it); resume undoes it, and releases a
//!   quarantined instance from its last saved state;
//! - `POST /api/v1/instances/{name}/swap`, a `.wasm` as the body: the build
//!   is compiled (in the bounded child), checked against the contract and
//!   the instance's parameters, and swapped in with the running instance's
//!   state, as a new file of it would be (and on probation the same way);
//! - `PUT /api/v1/plugins/{file}`, `NAME.wasm` or `NAME.toml` as the body:
//!   checked (a build is compiled in the bounded child) and written into
//!   the `[plugins]` folder whole, so a watched folder starts or hot-swaps
//!   instance NAME as it would a copied file; 201 when new, 200 when it
//!   replaced one;
//! - `GET /api/v1/venues`; `POST /api/v1/halt` and `/api/v1/resume`, with
//!   an optional body `{"venue": "...", "note": "..."}` (every live venue
//!   without one): new orders stop, or start again.
//!
//! Errors are `{"error": "..."}`: 401 without the token (or a signed-in
//! dashboard session), 403 for a request another site's page made, 404 for an unknown
//! instance or venue, 409 when the request conflicts with the instance's
//! state or a swap is already in flight, 400 for a malformed body, 413 for
//! one over 16 KiB (a build: over the runtime's 64 MiB), and 422 for a
//! build that is not a valid strategy for the instance.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde::Deserialize;

use super::auth::require;
use super::{AppError, AppState};
use crate::bar::now_ms;
use crate::config::{FailurePolicy, StrategyConfig};
use crate::control::{Command, ControlError};
use crate::engine::StrategyStatus;
use crate::risk::{HaltReason, VenueTrading};

/// The largest request body the control API reads.
const MAX_BODY: usize = 16 << 10;

pub(super) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/instances", get(list).post(add))
        .route("/api/v1/instances/{name}", get(one).delete(remove))
        .route("/api/v1/instances/{name}/pause", post(pause))
        .route("/api/v1/instances/{name}/resume", post(resume))
        .route("/api/v1/venues", get(venues))
        .route("/api/v1/orders", get(orders))
        .route("/api/v1/fills", get(fills))
        .route("/api/v1/positions", get(positions))
        .route("/api/v1/halt", post(halt))
        .route("/api/v1/resume", post(resume_trading))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(middleware::from_fn_with_state(MAX_BODY, announced_within))
        // A build is the one large body: the runtime refuses it past its
        // own limit, which axum's leaves room for.
        .merge(
            Router::new()
                .route("/api/v1/instances/{name}/swap", post(swap))
                .route("/api/v1/plugins/{file}", axum::routing::put(upload))
                .layer(DefaultBodyLimit::max(MAX_BUILD))
                .route_layer(middleware::from_fn_with_state(MAX_BUILD, announced_within)),
        )
        .route_layer(middleware::from_fn_with_state(state.access.clone(), require))
}

/// Refuses a body whose announced length is over `limit` before reading
/// any of it (a body with no length is cut off at the limit as it is read).
async fn announced_within(
    State(limit): State<usize>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let announced = request.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    match announced.map(str::parse::<u64>) {
        Some(Ok(length)) if length > limit as u64 => AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is {length} bytes; at most {limit} are read"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// The largest uploaded build read (the runtime's own cap is 64 MiB).
const MAX_BUILD: usize = (64 << 20) + 1;

/// `PUT /api/v1/plugins/{file}`: a plugin file for the folder.
async fn upload(
    State(state): State<AppState>,
    Path(file): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let bytes = body.map_err(|r| AppError::new(r.status(), crate::runtime::bounded(&r.body_text())))?;
    let placed = state.instances.upload(&file, bytes.to_vec()).await?;
    let status = if placed.replaced { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(serde_json::json!(placed))))
}

/// `POST /api/v1/instances/{name}/swap`, the build as the body: compiled,
/// checked and swapped in as a new file of it would be; answers with its
/// SHA-256 once it runs.
async fn swap(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let bytes = body.map_err(|r| AppError::new(r.status(), crate::runtime::bounded(&r.body_text())))?;
    let sha256 = state.instances.swap(&name, bytes.to_vec()).await?;
    Ok(Json(serde_json::json!({ "name": name, "sha256": sha256 })))
}

impl From<ControlError> for AppError {
    fn from(error: ControlError) -> Self {
        let status = match error {
            ControlError::NoSuchInstance { .. } | ControlError::NoSuchVenue { .. } => StatusCode::NOT_FOUND,
            ControlError::Conflict { .. } | ControlError::Stopped => StatusCode::CONFLICT,
            ControlError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ControlError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        AppError::new(status, error.to_string())
    }
}

fn instances(state: &AppState) -> Result<Vec<StrategyStatus>, AppError> {
    let status = state.status.read().map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "unavailable"))?;
    Ok(status.strategies.clone())
}

async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    Ok(Json(serde_json::json!({ "instances": instances(&state)? })))
}

async fn one(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<StrategyStatus>, AppError> {
    let found = instances(&state)?.into_iter().find(|s| s.name == name);
    found.map(Json).ok_or_else(|| ControlError::NoSuchInstance { name: crate::runtime::bounded(&name) }.into())
}

/// `POST /api/v1/instances`, `{"name", "plugin", "params", "sha256",
/// "limits"}`: starts a new instance of a bundled plugin or of a file in
/// the plugins folder.
async fn add(
    State(state): State<AppState>,
    body: Result<Json<StrategyConfig>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let Json(new) = body.map_err(|r| AppError::new(r.status(), crate::runtime::bounded(&r.body_text())))?;
    let name = new.name.clone().unwrap_or_default();
    let now = state.instances.add(new).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "name": name, "state": now }))))
}

/// `?on_remove=cancel|leave|flatten`; `cancel` by default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Removal {
    #[serde(default)]
    on_remove: FailurePolicy,
}

async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<Removal>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let axum::extract::Query(Removal { on_remove }) =
        query.map_err(|r| AppError::new(StatusCode::BAD_REQUEST, crate::runtime::bounded(&r.body_text())))?;
    let now = state.instances.remove(&name, on_remove).await?;
    Ok(Json(serde_json::json!({ "name": name, "state": now })))
}

async fn command(state: &AppState, name: &str, command: Command) -> Result<Json<serde_json::Value>, AppError> {
    let now = state.instances.command(name, command).await?;
    Ok(Json(serde_json::json!({ "name": name, "state": now })))
}

async fn pause(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, AppError> {
    command(&state, &name, Command::Pause).await
}

async fn resume(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, AppError> {
    command(&state, &name, Command::Resume).await
}

/// `?instance=NAME&limit=N`, both optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    instance: Option<String>,
    limit: Option<u32>,
}

fn filter(query: Result<axum::extract::Query<Filter>, QueryRejection>) -> Result<Filter, AppError> {
    query.map(|q| q.0).map_err(|r| AppError::new(StatusCode::BAD_REQUEST, crate::runtime::bounded(&r.body_text())))
}

/// The instance an order or fill belongs to, from its `name@venue`.
fn instance_of<'a>(strategy: &'a str, venue: &str) -> &'a str {
    strategy.strip_suffix(venue).and_then(|s| s.strip_suffix('@')).unwrap_or(strategy)
}

fn store_error(_: crate::store::StoreError) -> AppError {
    AppError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
}

/// `GET /api/v1/orders`: the venue's working orders, oldest first; on the
/// paper broker, each paper instance's.
async fn orders(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<Filter>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Filter { instance, .. } = filter(query)?;
    working_orders(&state, instance.as_deref()).map(Json)
}

/// The working orders `GET /api/v1/orders` shows.
pub(super) fn working_orders(state: &AppState, instance: Option<&str>) -> Result<serde_json::Value, AppError> {
    let wanted = |name: &str| instance.is_none_or(|i| i == name);
    let Some(ledger) = &state.ledger else {
        let mut shown = Vec::new();
        for (name, book) in paper_books(state)?.iter().filter(|(name, _)| wanted(name)) {
            let book = book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            shown.extend(book.working.iter().map(|o| {
                serde_json::json!({ "order": o.intent_id.id, "instance": name, "symbol": &*o.intent.symbol,
                    "side": o.intent.side.to_string(), "qty": o.intent.qty.to_string(),
                    "type": o.intent.order_type.to_string(), "status": "accepted", "created_ms": o.placed_at })
            }));
        }
        return Ok(serde_json::json!({ "venue": "paper", "orders": shown }));
    };
    let orders = ledger.store.working_orders(ledger.venue).map_err(store_error)?;
    let shown: Vec<serde_json::Value> = orders
        .iter()
        .map(|o| (instance_of(&o.strategy, ledger.venue), o))
        .filter(|(name, _)| wanted(name))
        .map(|(name, o)| {
            serde_json::json!({ "client_order_id": o.client_order_id, "instance": name, "symbol": o.symbol,
                "side": o.side.to_string(), "qty": o.qty.to_string(), "type": o.order_type.to_string(),
                "status": o.status, "filled_qty": o.filled_qty.to_string(), "created_ms": o.created })
        })
        .collect();
    Ok(serde_json::json!({ "venue": ledger.venue, "orders": shown }))
}

/// Each paper instance's book, by name.
fn paper_books(state: &AppState) -> Result<Vec<(String, crate::engine::SharedLedger)>, AppError> {
    Ok(instances(state)?.into_iter().filter_map(|s| Some((s.name, s.paper?))).collect())
}

/// `GET /api/v1/fills`: the venue's latest fills (100, at most 1,000),
/// newest first; on the paper broker, the paper instances'.
async fn fills(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<Filter>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Filter { instance, limit } = filter(query)?;
    let limit = limit.unwrap_or(100).min(1000) as usize;
    recent_fills(&state, instance.as_deref(), limit).map(Json)
}

/// The latest fills `GET /api/v1/fills` shows, newest first.
pub(super) fn recent_fills(
    state: &AppState,
    instance: Option<&str>,
    limit: usize,
) -> Result<serde_json::Value, AppError> {
    let wanted = |name: &str| instance.is_none_or(|i| i == name);
    let Some(ledger) = &state.ledger else {
        let mut shown: Vec<(i64, serde_json::Value)> = Vec::new();
        for (name, book) in paper_books(state)?.iter().filter(|(name, _)| wanted(name)) {
            let book = book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            shown.extend(book.fills.iter().rev().take(limit).map(|f| {
                let fill = serde_json::json!({ "order": f.intent_id.id, "instance": name, "symbol": &*f.symbol,
                    "side": f.side.to_string(), "qty": f.qty.to_string(), "price": f.price.to_string(),
                    "commission": f.commission.to_string(), "time_ms": f.time });
                (f.time, fill)
            }));
        }
        // Newest first across instances (stable: each one's own order kept).
        shown.sort_by_key(|(time, _)| std::cmp::Reverse(*time));
        let shown: Vec<serde_json::Value> = shown.into_iter().take(limit).map(|(_, f)| f).collect();
        return Ok(serde_json::json!({ "venue": "paper", "fills": shown }));
    };
    let fills = ledger.store.recent_fills(ledger.venue, limit as u32).map_err(store_error)?;
    let shown: Vec<serde_json::Value> = fills
        .iter()
        .map(|(strategy, f)| (instance_of(strategy, ledger.venue), f))
        .filter(|(name, _)| wanted(name))
        .map(|(name, f)| {
            serde_json::json!({ "fill_id": f.fill_id, "client_order_id": f.client_order_id, "instance": name,
                "symbol": f.symbol, "side": f.side.to_string(), "qty": f.qty.to_string(),
                "price": f.price.to_string(), "commission": f.commission.to_string(), "time_ms": f.time })
        })
        .collect();
    Ok(serde_json::json!({ "venue": ledger.venue, "fills": shown }))
}

/// `GET /api/v1/positions`: the venue's book, and each instance's own.
async fn positions(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    books(&state).map(Json)
}

/// The venue's book and each instance's own, as `GET /api/v1/positions` shows them.
pub(super) fn books(state: &AppState) -> Result<serde_json::Value, AppError> {
    let venue = match &state.ledger {
        Some(ledger) => {
            let book = ledger.store.positions(ledger.venue).map_err(store_error)?;
            let book: Vec<serde_json::Value> = book
                .iter()
                .map(|p| serde_json::json!({ "symbol": p.symbol, "qty": p.qty.to_string(), "avg_price": p.avg_price.to_string() }))
                .collect();
            serde_json::json!({ "venue": ledger.venue, "positions": book })
        }
        None => serde_json::Value::Null,
    };
    let instances: serde_json::Map<String, serde_json::Value> =
        instances(state)?.into_iter().map(|s| (s.name, serde_json::json!(s.positions))).collect();
    Ok(serde_json::json!({ "venue": venue, "instances": instances }))
}

async fn venues(State(state): State<AppState>) -> Json<Vec<VenueTrading>> {
    Json(state.gate.as_ref().map(|g| g.venues()).unwrap_or_default())
}

/// Which venue, and why; both optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trading {
    venue: Option<String>,
    note: Option<String>,
}

/// An empty body means every venue.
fn trading(body: Result<Json<Trading>, JsonRejection>) -> Result<Trading, AppError> {
    match body {
        Ok(Json(t)) => Ok(t),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(Trading::default()),
        // 400 for a malformed body, 413 for one over the limit.
        Err(rejection) => Err(AppError::new(rejection.status(), crate::runtime::bounded(&rejection.body_text()))),
    }
}

/// The venues a request names (all of them without one).
fn named(state: &AppState, venue: Option<&str>) -> Result<Vec<String>, AppError> {
    let all: Vec<String> =
        state.gate.as_ref().map(|g| g.venues()).unwrap_or_default().into_iter().map(|v| v.venue).collect();
    if all.is_empty() {
        let message = "no live venue: the paper broker takes no halts";
        return Err(ControlError::Conflict { message: message.into() }.into());
    }
    match venue {
        None => Ok(all),
        Some(v) if all.iter().any(|a| a == v) => Ok(vec![v.to_string()]),
        Some(v) => Err(ControlError::NoSuchVenue { venue: crate::runtime::bounded(v) }.into()),
    }
}

async fn halt(
    State(state): State<AppState>,
    body: Result<Json<Trading>, JsonRejection>,
) -> Result<Json<Vec<VenueTrading>>, AppError> {
    let Trading { venue, note } = trading(body)?;
    let note = crate::runtime::bounded(note.as_deref().unwrap_or("through the control API"));
    let venues = named(&state, venue.as_deref())?;
    if let Some(gate) = &state.gate {
        for venue in &venues {
            let reason = HaltReason::Operator { note: note.clone() };
            gate.halt(venue, reason, now_ms())
                .map_err(|_| AppError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable"))?;
        }
    }
    Ok(venues_now(&state, &venues))
}

async fn resume_trading(
    State(state): State<AppState>,
    body: Result<Json<Trading>, JsonRejection>,
) -> Result<Json<Vec<VenueTrading>>, AppError> {
    let Trading { venue, .. } = trading(body)?;
    let venues = named(&state, venue.as_deref())?;
    if let Some(gate) = &state.gate {
        for venue in &venues {
            gate.resume(venue, now_ms(), "operator")
                .map_err(|_| AppError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable"))?;
        }
    }
    Ok(venues_now(&state, &venues))
}

fn venues_now(state: &AppState, names: &[String]) -> Json<Vec<VenueTrading>> {
    let all = state.gate.as_ref().map(|g| g.venues()).unwrap_or_default();
    Json(all.into_iter().filter(|v| names.contains(&v.venue)).collect())
}

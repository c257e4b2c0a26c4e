//! The gateway connection the broker and the feed share: one HTTP client
//! trusting the gateway's certificate as configured, one brokerage session
//! kept alive and checked, one cache of contract ids.
//!
//! The session is checked before any request once `tickle_every` has passed
//! since the last check (the sync loop calls often enough that this keeps
//! it alive): `POST /tickle`, then `/iserver/auth/status` if the tickle did
//! not say. While it is not authenticated every call fails with
//! [`VenueError::Unauthorized`], which halts the venue until a sync
//! succeeds again. A new session (its id changed, or it was lost) is
//! prepared as the gateway requires: `/iserver/accounts` and
//! `/portfolio/accounts` are read before anything else, and the account is
//! checked to be among them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::config::IbkrConfig;
use super::contracts::Contracts;
use super::wire::{VENUE, error_text, failure};
use crate::store::Store;
use crate::venue::{VenueError, json, send};

/// The Client Portal gateway, as one account's session.
pub struct IbkrGateway {
    client: reqwest::Client,
    base: String,
    pub(super) config: IbkrConfig,
    session: tokio::sync::Mutex<Session>,
    /// Taken shared by every request and alone by an order placement with
    /// its questions: the gateway drops an unanswered question at the next
    /// other request, so nothing may come between a question and its reply.
    turn: tokio::sync::RwLock<()>,
    /// When the live orders were last read: at most one read a pace.
    orders_read: tokio::sync::Mutex<Option<Instant>>,
    pub(super) contracts: Contracts,
}

#[derive(Default)]
struct Session {
    /// When the session was last seen authenticated and ready.
    checked: Option<Instant>,
    /// The gateway's session id at that check.
    id: Option<String>,
    /// When the accounts were last read for it.
    prepared: Option<Instant>,
}

/// How long a prepared session is trusted: the gateway resets its
/// brokerage side nightly, which the session id may not show.
const PREPARED_FOR: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct Tickle {
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    iserver: Option<TickleServer>,
}

#[derive(Deserialize)]
struct TickleServer {
    #[serde(default, rename = "authStatus")]
    auth_status: Option<AuthStatus>,
}

#[derive(Deserialize)]
struct AuthStatus {
    #[serde(default)]
    authenticated: bool,
    #[serde(default)]
    competing: bool,
}

#[derive(Deserialize)]
struct Accounts {
    #[serde(default)]
    accounts: Vec<String>,
    #[serde(default, rename = "selectedAccount")]
    selected: Option<String>,
}

/// The live orders list (`/iserver/account/orders`).
#[derive(Deserialize)]
pub(super) struct LiveOrders<T> {
    #[serde(default = "Vec::new")]
    pub orders: Vec<T>,
    #[serde(default)]
    pub snapshot: Option<bool>,
}

const LIVE_ORDERS: &str = "/iserver/account/orders";

#[derive(Deserialize)]
struct PortfolioAccount {
    #[serde(default, rename = "accountId")]
    account_id: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

/// Why the gateway setup failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewaySetupError {
    #[error("{problem}")]
    Config { problem: String },
    #[error("cannot read the gateway's certificate {path}: {source}")]
    Certificate { path: String, source: std::io::Error },
    #[error("the gateway's certificate {path} is not PEM: {source}")]
    Pem { path: String, source: reqwest::Error },
    #[error("cannot build the gateway's HTTP client: {source}")]
    Client { source: reqwest::Error },
}

impl IbkrGateway {
    /// A client for the gateway in `config`, trusting its certificate as
    /// configured; nothing is sent yet.
    pub fn new(config: IbkrConfig, timeout: Duration, store: Arc<Store>) -> Result<Self, GatewaySetupError> {
        if let Some(problem) = config.problem() {
            return Err(GatewaySetupError::Config { problem });
        }
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(path) = &config.ca_file {
            let pem =
                std::fs::read(path).map_err(|source| GatewaySetupError::Certificate { path: path.clone(), source })?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|source| GatewaySetupError::Pem { path: path.clone(), source })?;
            builder = builder.add_root_certificate(certificate);
        }
        if config.trust_loopback_gateway {
            // `problem` refused this for a gateway that is not on loopback.
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|source| GatewaySetupError::Client { source })?;
        let contracts = Contracts::new(store, &config.conids);
        Ok(Self {
            client,
            base: config.gateway.trim_end_matches('/').to_string(),
            config,
            session: tokio::sync::Mutex::default(),
            turn: tokio::sync::RwLock::default(),
            orders_read: tokio::sync::Mutex::default(),
            contracts,
        })
    }

    pub fn account(&self) -> &str {
        &self.config.account
    }

    /// Sends a request in an authenticated session and returns the status
    /// and body of any answer (throttles become errors). A 401 ends the
    /// session as far as the host knows: the next call checks it again.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), VenueError> {
        let _turn = self.turn.read().await;
        self.call_in_turn(method, path, query, body).await
    }

    /// The gateway to this caller alone until the guard is dropped; make
    /// requests meanwhile with [`Self::call_in_turn`].
    pub(super) async fn alone(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.turn.write().await
    }

    /// Answers a question of the order placed just before, holding the
    /// turn: sent as it is, since even the session check (a tickle, the
    /// account reads of a new session) would make the gateway drop it.
    pub(super) async fn reply_in_turn(
        &self,
        reply_id: &str,
        confirmed: bool,
    ) -> Result<(u16, Vec<u8>), VenueError> {
        let path = format!("/iserver/reply/{}", crate::venue::path_segment(reply_id));
        let verdict = serde_json::json!({ "confirmed": confirmed });
        let answer = self.send_raw(reqwest::Method::POST, &path, &[], Some(&verdict)).await?;
        if answer.0 == 401 {
            *self.session.lock().await = Session::default();
        }
        Ok(answer)
    }

    /// The live orders: those working, and those that ended in this
    /// session. Read at most once every `orders_every_ms` (the gateway's
    /// limit), so a caller may wait; a list the gateway is still loading
    /// (`"snapshot": false`) is read again after the pace, and never taken
    /// for "no orders".
    pub(super) async fn live_orders<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<T>, VenueError> {
        for _ in 0..3 {
            let (status, body) = {
                let _turn = self.turn.read().await;
                self.ready().await?;
                self.read_live_orders().await?
            };
            if status == 401 {
                *self.session.lock().await = Session::default();
            }
            if !(200..300).contains(&status) {
                return Err(failure(LIVE_ORDERS, status, &body));
            }
            let list: LiveOrders<T> = json(VENUE, LIVE_ORDERS, &body)?;
            if list.snapshot != Some(false) {
                return Ok(list.orders);
            }
        }
        Err(VenueError::Unknown {
            venue: VENUE,
            endpoint: LIVE_ORDERS.into(),
            message: "the gateway is still loading its orders (snapshot: false); read again later".into(),
        })
    }

    /// One paced read of the live orders: its status and body.
    async fn read_live_orders(&self) -> Result<(u16, Vec<u8>), VenueError> {
        let mut last = self.orders_read.lock().await;
        let pace = Duration::from_millis(self.config.orders_every_ms);
        if let Some(at) = *last {
            tokio::time::sleep_until((at + pace).into()).await;
        }
        let answer = self.send_raw(reqwest::Method::GET, LIVE_ORDERS, &[], None).await;
        // Counted from the answer, so the gateway sees the pace however long it took.
        *last = Some(Instant::now());
        answer
    }

    /// [`Self::call`] for a caller that holds its turn (see [`Self::alone`]).
    pub(super) async fn call_in_turn(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), VenueError> {
        self.ready().await?;
        let answer = self.send_raw(method, path, query, body).await?;
        if answer.0 == 401 {
            *self.session.lock().await = Session::default();
        }
        Ok(answer)
    }

    /// [`Self::call`] for a GET whose only good answer is a 2XX with JSON.
    pub(super) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        endpoint: &str,
        query: &[(&str, String)],
    ) -> Result<T, VenueError> {
        let (status, body) = self.call(reqwest::Method::GET, path, query, None).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        json(VENUE, endpoint, &body)
    }

    async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), VenueError> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        send(VENUE, path, request).await
    }

    /// Makes sure the session is authenticated and prepared, tickling it
    /// when `tickle_every` has passed since the last check.
    async fn ready(&self) -> Result<(), VenueError> {
        let mut session = self.session.lock().await;
        let every = Duration::from_millis(self.config.tickle_every_ms);
        if session.checked.is_some_and(|at| at.elapsed() < every) {
            return Ok(());
        }
        let (status, body) = self.send_raw(reqwest::Method::POST, "/tickle", &[], None).await?;
        if !(200..300).contains(&status) {
            *session = Session::default();
            return Err(failure("/tickle", status, &body));
        }
        let tickle: Tickle = json(VENUE, "/tickle", &body)?;
        let auth = match tickle.iserver.and_then(|s| s.auth_status) {
            Some(auth) => auth,
            None => {
                let (status, body) = self.send_raw(reqwest::Method::POST, "/iserver/auth/status", &[], None).await?;
                if !(200..300).contains(&status) {
                    *session = Session::default();
                    return Err(failure("/iserver/auth/status", status, &body));
                }
                json(VENUE, "/iserver/auth/status", &body)?
            }
        };
        if !auth.authenticated {
            *session = Session::default();
            let why = if auth.competing { "another session took over (competing)" } else { "not authenticated" };
            return Err(VenueError::Unauthorized {
                venue: VENUE,
                endpoint: "/iserver/auth/status".into(),
                status: 401,
                message: format!(
                    "the gateway's brokerage session is {why}: log in to the Client Portal gateway in a browser"
                ),
            });
        }
        let same_session = session.checked.is_some() && tickle.session.is_some() && session.id == tickle.session;
        let mut prepared = session.prepared.filter(|at| same_session && at.elapsed() < PREPARED_FOR);
        if prepared.is_none() {
            self.prepare().await?;
            tracing::info!(venue = VENUE, account = %self.config.account, "gateway session ready");
            prepared = Some(Instant::now());
        }
        *session = Session { checked: Some(Instant::now()), id: tickle.session, prepared };
        Ok(())
    }

    /// Reads the account lists a new session must read before orders and
    /// portfolio requests, and checks the account is in them.
    async fn prepare(&self) -> Result<(), VenueError> {
        let endpoint = "/iserver/accounts";
        let (status, body) = self.send_raw(reqwest::Method::GET, endpoint, &[], None).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        let accounts: Accounts = json(VENUE, endpoint, &body)?;
        if !accounts.accounts.iter().any(|a| a == &self.config.account) {
            let message = match error_text(&body) {
                Some(said) => said,
                None => format!(
                    "account {} is not one this login can trade (it has {})",
                    self.config.account,
                    crate::runtime::bounded(&accounts.accounts.join(", "))
                ),
            };
            return Err(VenueError::Rejected { venue: VENUE, endpoint: endpoint.into(), status, code: None, message });
        }
        if accounts.selected.as_deref().is_some_and(|selected| selected != self.config.account) {
            // Live orders and trades are the selected account's.
            let select = serde_json::json!({ "acctId": self.config.account });
            let (status, body) = self.send_raw(reqwest::Method::POST, "/iserver/account", &[], Some(&select)).await?;
            if !(200..300).contains(&status) {
                return Err(failure("/iserver/account", status, &body));
            }
        }
        let endpoint = "/portfolio/accounts";
        let (status, body) = self.send_raw(reqwest::Method::GET, endpoint, &[], None).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        let listed: Vec<PortfolioAccount> = json(VENUE, endpoint, &body)?;
        if !listed.iter().any(|a| [&a.account_id, &a.id].into_iter().flatten().any(|id| id == &self.config.account)) {
            return Err(VenueError::Rejected {
                venue: VENUE,
                endpoint: endpoint.into(),
                status,
                code: None,
                message: format!("account {} is not in the portfolio's accounts", self.config.account),
            });
        }
        // The live orders want a first read in a new session, which may
        // come back empty; the answer is left, the next read is the one.
        // Refused as too soon (another process read them just before), it
        // has done its part all the same.
        match self.read_live_orders().await {
            Ok(_) | Err(VenueError::Throttled { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

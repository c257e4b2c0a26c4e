//! Symbols to IBKR contract ids (`conid`) and back. An id is found once,
//! with `/iserver/secdef/search`, and kept in the store, so a restart does
//! not search again; ids pinned in the config are never searched.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::gateway::IbkrGateway;
use super::wire::{VENUE, error_text, failure, malformed};
use crate::store::Store;
use crate::venue::{VenueError, json};

/// The security type searched for.
const STOCK: &str = "STK";

pub(crate) struct Contracts {
    store: Arc<Store>,
    /// Symbol → id, for every symbol resolved or pinned.
    known: Mutex<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(deserialize_with = "super::wire::id")]
    conid: String,
    #[serde(default)]
    symbol: Option<String>,
    /// The listing exchange, for a stock.
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    sections: Vec<Section>,
}

#[derive(Deserialize)]
struct Section {
    #[serde(rename = "secType")]
    sec_type: String,
}

impl Contracts {
    pub(super) fn new(store: Arc<Store>, pinned: &BTreeMap<String, i64>) -> Self {
        let known = pinned.iter().map(|(symbol, id)| (symbol.clone(), id.to_string())).collect();
        Self { store, known: Mutex::new(known) }
    }

    fn known(&self, symbol: &str) -> Option<String> {
        self.known.lock().ok()?.get(symbol).cloned()
    }

    fn remember(&self, symbol: &str, id: &str) {
        if let Ok(mut known) = self.known.lock() {
            known.insert(symbol.to_string(), id.to_string());
        }
    }

    /// The symbol a contract id was resolved for, if this host resolved it.
    pub(super) fn symbol_of(&self, conid: &str) -> Option<String> {
        let known = self.known.lock().ok()?;
        known.iter().find(|(_, id)| id.as_str() == conid).map(|(symbol, _)| symbol.clone())
    }
}

impl IbkrGateway {
    /// The contract id of `symbol`: pinned, stored, or searched for (and
    /// then stored). Stocks only: the first hit listing `STK` for exactly
    /// that symbol (on `exchange`, when configured) wins, as IBKR lists the
    /// primary listing first. Futures would need more than a search (their
    /// search hit is the index) and more order fields.
    pub(crate) async fn conid(&self, symbol: &str) -> Result<String, VenueError> {
        if let Some(id) = self.contracts.known(symbol) {
            return Ok(id);
        }
        if let Some(id) = self.contracts.store.contract(VENUE, symbol).map_err(store_error)? {
            self.contracts.remember(symbol, &id);
            return Ok(id);
        }
        let endpoint = "/iserver/secdef/search";
        let sec_type = STOCK;
        let query = [("symbol", symbol.to_string()), ("secType", sec_type.to_string())];
        let (status, body) = self.call(reqwest::Method::GET, endpoint, &query, None).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        let not_found = |said: Option<String>| VenueError::Rejected {
            venue: VENUE,
            endpoint: endpoint.into(),
            status,
            code: None,
            message: format!(
                "no {sec_type} contract for `{}`{}",
                crate::runtime::bounded(symbol),
                said.map(|s| format!(": {s}")).unwrap_or_default()
            ),
        };
        // An unknown symbol is an `{"error": …}` object, not an empty list.
        if let Some(said) = error_text(&body) {
            return Err(not_found(Some(said)));
        }
        let hits: Vec<Hit> = json(VENUE, endpoint, &body)?;
        let exchange = self.config.exchange.as_deref();
        let hit = hits.into_iter().find(|hit| {
            hit.symbol.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(symbol))
                && hit.sections.iter().any(|s| s.sec_type.eq_ignore_ascii_case(sec_type))
                && exchange.is_none_or(|want| hit.description.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(want)))
        });
        let Some(hit) = hit else { return Err(not_found(None)) };
        if hit.conid == "0" {
            return Err(malformed(endpoint, &body, "contract id 0"));
        }
        self.contracts.store.put_contract(VENUE, symbol, &hit.conid).map_err(store_error)?;
        self.contracts.remember(symbol, &hit.conid);
        tracing::info!(venue = VENUE, symbol, conid = %hit.conid, "contract resolved");
        Ok(hit.conid)
    }
}

/// The store failing is not the venue's fault, but it stops the request.
fn store_error(error: crate::store::StoreError) -> VenueError {
    VenueError::Unknown { venue: VENUE, endpoint: "contract cache".into(), message: error.to_string() }
}

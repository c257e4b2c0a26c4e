//! The `[[webhook]]` tables: a route's kind, action, secrets and limits.

use serde::Deserialize;

use super::{Secret, TOLERANCE_SECS};

/// How a webhook route authenticates its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// `POST /webhooks/tradingview/{name}`, a passphrase in the JSON body.
    Tradingview,
    /// `POST /webhooks/{name}`, Standard Webhooks signatures.
    Standard,
}

/// What an accepted delivery does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookAction {
    /// Deliver the payload to `strategies` through `on-signal`.
    Signal,
    /// Turn the delivery into an order of the one strategy in `strategies`:
    /// a TradingView strategy alert, or for Standard Webhooks a JSON order
    /// (`symbol`, `side`, `qty`, optional `type`, `limit_price` and `stop_price`).
    Order,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub kind: WebhookKind,
    pub action: WebhookAction,
    /// The strategies (by `[[strategy]] name`) the route feeds.
    pub strategies: Vec<String>,
    /// Standard Webhooks: `whsec_...` secrets; several during a rotation.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Standard Webhooks: instead of `secrets`, an environment variable
    /// holding them (separated by spaces or commas).
    pub secrets_env: Option<String>,
    /// TradingView: the `passphrase` the alert JSON must carry.
    pub passphrase: Option<String>,
    /// TradingView: instead of `passphrase`, an environment variable holding it.
    pub passphrase_env: Option<String>,
    /// Source addresses allowed; empty allows any.
    #[serde(default)]
    pub allow_ips: Vec<std::net::IpAddr>,
    #[serde(default = "default_body_limit")]
    pub max_body_bytes: usize,
    /// Authenticated deliveries a minute before the route answers 429.
    #[serde(default = "default_route_rate")]
    pub per_minute: u32,
    /// Refused (unauthenticated or unreadable) requests a minute before the
    /// route answers them 429; a budget of their own, so they never use up
    /// `per_minute`.
    #[serde(default = "default_unauthenticated_rate")]
    pub unauthenticated_per_minute: u32,
    /// How long a delivery id (`webhook-id`, or TradingView's `timenow`
    /// with the order id) is remembered, so a retry within it does nothing.
    #[serde(default = "default_dedup_window")]
    pub dedup_window_secs: u64,
    /// How long a TradingView alert without `timenow` is remembered by a
    /// hash of its body: short, so an alert firing the same text again
    /// later acts again.
    #[serde(default = "default_body_dedup_window")]
    pub body_dedup_window_secs: u64,
}

fn default_body_limit() -> usize {
    64 << 10
}

fn default_route_rate() -> u32 {
    600
}

fn default_unauthenticated_rate() -> u32 {
    60
}

fn default_dedup_window() -> u64 {
    24 * 60 * 60
}

fn default_body_dedup_window() -> u64 {
    30
}

impl WebhookConfig {
    /// Checks the keys that do not depend on the rest of the config.
    pub(crate) fn validate(&self, key: impl Fn(&str) -> String) -> Result<(), String> {
        let (plain, plain_env) = match self.kind {
            WebhookKind::Standard => ("secrets", "secrets_env"),
            WebhookKind::Tradingview => ("passphrase", "passphrase_env"),
        };
        let (has_plain, has_env, other) = match self.kind {
            WebhookKind::Standard => (
                !self.secrets.is_empty(),
                self.secrets_env.is_some(),
                [("passphrase", self.passphrase.is_some()), ("passphrase_env", self.passphrase_env.is_some())],
            ),
            WebhookKind::Tradingview => (
                self.passphrase.as_deref().is_some_and(|p| !p.is_empty()),
                self.passphrase_env.is_some(),
                [("secrets", !self.secrets.is_empty()), ("secrets_env", self.secrets_env.is_some())],
            ),
        };
        if let Some((k, _)) = other.iter().find(|(_, set)| *set) {
            return Err(format!("{}: not used by {:?} routes", key(k), self.kind).to_lowercase());
        }
        match (has_plain, has_env) {
            (false, false) => {
                return Err(format!("{}: required (or {plain_env}, naming a variable holding it)", key(plain)));
            }
            (true, true) => return Err(format!("{}: give {plain} or {plain_env}, not both", key(plain_env))),
            _ => {}
        }
        if self.secrets.iter().any(|s| Secret::parse(s).is_err()) {
            return Err(format!("{}: a secret is not whsec_ followed by base64", key("secrets")));
        }
        if self.action == WebhookAction::Order && self.strategies.len() != 1 {
            return Err(format!("{}: an order route places orders for exactly one strategy", key("strategies")));
        }
        let tolerance = 2 * TOLERANCE_SECS as u64;
        if self.kind == WebhookKind::Standard && self.dedup_window_secs < tolerance {
            return Err(format!(
                "{}: at least {tolerance}, so a replay within the timestamp tolerance is still caught",
                key("dedup_window_secs")
            ));
        }
        for (k, secs) in
            [("dedup_window_secs", self.dedup_window_secs), ("body_dedup_window_secs", self.body_dedup_window_secs)]
        {
            if secs == 0 || secs > 365 * 24 * 60 * 60 {
                return Err(format!("{}: expected 1 s to a year, got {secs}", key(k)));
            }
        }
        Ok(())
    }
}

//! The `[ibkr]` section: which gateway, which account, how far to trust
//! the gateway's certificate, and which confirmation questions to answer yes.

use std::collections::BTreeMap;

use serde::Deserialize;

/// How the host reaches the Client Portal gateway and trades through it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IbkrConfig {
    /// The gateway's API root.
    pub gateway: String,
    /// The account orders go to and positions are read from: `U…` for a
    /// live account, `DU…` for a paper one.
    pub account: String,
    /// A PEM file with the gateway's certificate (or the CA that signed
    /// it), trusted besides the usual roots.
    pub ca_file: Option<String>,
    /// Accept whatever certificate the gateway shows, unchecked. Allowed
    /// only when `gateway` is on loopback (`localhost`, `127.0.0.1`,
    /// `::1`), where the traffic never leaves the machine.
    pub trust_loopback_gateway: bool,
    /// The gateway's confirmation questions to answer yes, by message id
    /// (e.g. `o163`, a price away from the market). Any other question
    /// refuses the order, and the refusal names the question.
    pub confirm: Vec<String>,
    /// The listing exchange a searched stock must have (the search's
    /// `description`, e.g. `NASDAQ`); the first stock listing otherwise.
    pub exchange: Option<String>,
    /// Contract ids to use without searching, by symbol.
    pub conids: BTreeMap<String, i64>,
    /// Time between `/tickle` calls that keep the session alive (and
    /// between checks that it is still authenticated).
    pub tickle_every_ms: u64,
    /// Bars from outside regular trading hours too.
    pub outside_rth: bool,
    /// Least time between reads of the live orders: IBKR allows one
    /// every 5 s, and an address that reads faster is shut out for minutes.
    pub orders_every_ms: u64,
}

impl Default for IbkrConfig {
    fn default() -> Self {
        Self {
            gateway: super::GATEWAY_URL.into(),
            account: String::new(),
            ca_file: None,
            trust_loopback_gateway: false,
            confirm: Vec::new(),
            exchange: None,
            conids: BTreeMap::new(),
            tickle_every_ms: 60_000,
            outside_rth: false,
            orders_every_ms: 5_000,
        }
    }
}

impl IbkrConfig {
    /// What is wrong with the section, if anything, before anything connects.
    pub fn problem(&self) -> Option<String> {
        if self.account.trim().is_empty() {
            return Some("key `ibkr.account`: name the account to trade, e.g. \"DU1234567\"".into());
        }
        let Ok(url) = reqwest::Url::parse(&self.gateway) else {
            return Some(format!("key `ibkr.gateway`: `{}` is not a URL", crate::runtime::bounded(&self.gateway)));
        };
        if self.trust_loopback_gateway && !is_loopback(&url) {
            return Some(format!(
                "key `ibkr.trust_loopback_gateway`: the gateway `{}` is not on loopback; name its certificate with `ibkr.ca_file` instead",
                crate::runtime::bounded(&self.gateway)
            ));
        }
        if self.tickle_every_ms < 1_000 {
            return Some("key `ibkr.tickle_every_ms`: at least 1000 (the gateway allows one tickle a second)".into());
        }
        None
    }
}

/// Whether `url` names this machine.
pub(super) fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchecked_certificates_are_trusted_on_loopback_only() {
        let with = |gateway: &str| IbkrConfig {
            gateway: gateway.into(),
            account: "DU1".into(),
            trust_loopback_gateway: true,
            ..IbkrConfig::default()
        };
        for ok in ["https://localhost:5000/v1/api", "https://127.0.0.1:5000/v1/api", "https://[::1]:5000/v1/api"] {
            assert_eq!(with(ok).problem(), None, "{ok}");
        }
        for far in
            ["https://gateway.example.com:5000/v1/api", "https://10.0.0.5:5000/v1/api", "https://localhost.evil.com/"]
        {
            assert!(with(far).problem().unwrap().contains("not on loopback"), "{far}");
        }
        assert!(IbkrConfig::default().problem().unwrap().contains("ibkr.account"));
    }
}

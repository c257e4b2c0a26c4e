//! The host's TOML configuration.
//!
//! Every table refuses unknown keys, so a typo is an error rather than a
//! silently ignored setting. Errors name the file, the key and what was
//! expected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::engine::PluginsConfig;
use crate::notify::SinkConfig;
use crate::risk::RiskLimits;
use crate::runtime::{Budget, LimitsSection};
mod market;
mod runtime;

pub(crate) use self::market::need_symbols;
pub use self::market::{BrokerConfig, BrokerKind, FeedConfig, FeedKind, MarketConfig};
pub use self::runtime::{FailurePolicy, InstancePolicy, PausedBars, RuntimeSection};
pub use crate::venues::Venue;
pub use crate::webhook::{WebhookAction, WebhookConfig, WebhookKind};

/// The configuration `stratbox run` uses when given none.
pub const EMBEDDED_DEFAULT: &str = include_str!("../default.toml");

/// Largest config file accepted, in bytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read { path: String, source: std::io::Error },
    #[error("config {path} is {size} bytes, over the limit of {MAX_CONFIG_BYTES}")]
    TooLarge { path: String, size: u64 },
    #[error("invalid config {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Every strategy's limits, unless its own `limits` say otherwise.
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub risk: RiskLimits,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    pub feed: FeedConfig,
    #[serde(default, rename = "strategy")]
    pub strategies: Vec<StrategyConfig>,
    /// A folder strategies are dropped into (see `engine::dropin`).
    pub plugins: Option<PluginsConfig>,
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default, rename = "sink")]
    pub sinks: Vec<SinkConfig>,
    #[serde(default, rename = "price_alert")]
    pub price_alerts: Vec<PriceAlert>,
    /// Interactive Brokers' gateway, when the broker or the feed is `ibkr`.
    pub ibkr: Option<crate::venues::ibkr::IbkrConfig>,
}

/// A price level whose crossing (by a bar's close) raises `price.crossed`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceAlert {
    pub symbol: String,
    pub level: Decimal,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP listener: health, webhooks and the control API.
    pub listen: SocketAddr,
    /// The control API's bearer token, unless `STRATBOX_API_TOKEN` is set;
    /// without either the host listens on loopback only.
    pub api_token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 8080)), api_token: None }
    }
}

/// The SQLite file for orders, fills, positions, cursors and the journal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub path: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { path: "stratbox.db".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyConfig {
    /// A name for logs and the API; defaults to the plugin's.
    pub name: Option<String>,
    /// A bundled plugin name or a `.wasm` path (relative to the config file).
    pub plugin: String,
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// Pins the build: a plugin whose SHA-256 (hex, as `plugin inspect`
    /// prints it) differs is refused, at start and in a hot swap.
    pub sha256: Option<String>,
    /// This strategy's own limits, laid over `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The feed's symbols this instance hears; all of them when empty.
    #[serde(default)]
    pub symbols: Vec<String>,
}

/// A parameter value; plugins receive its text form.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Text(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Integer(v) => write!(f, "{v}"),
            ParamValue::Float(v) => write!(f, "{v}"),
            ParamValue::Boolean(v) => write!(f, "{v}"),
            ParamValue::Text(v) => f.write_str(v),
        }
    }
}

impl Config {
    /// What every strategy may use unless its own `limits` say otherwise,
    /// per-minute limits included: this is host mode.
    pub fn budget(&self) -> Budget {
        self.limits.over(&Budget::default())
    }

    /// What `strategy` may use.
    pub fn budget_of(&self, strategy: &StrategyConfig) -> Budget {
        strategy.limits.over(&self.budget())
    }

    /// Where compiled plugins are kept: `[runtime] compile_cache`, or else
    /// `compiled/` in the host's data folder (the store's) when
    /// `keeps_store`.
    pub fn compile_cache(&self, keeps_store: bool) -> Option<PathBuf> {
        match &self.runtime.compile_cache {
            Some(dir) if dir.is_empty() => None,
            Some(dir) => Some(PathBuf::from(dir)),
            None if keeps_store => {
                let store = Path::new(&self.store.path);
                Some(store.parent().unwrap_or(Path::new("")).join("compiled"))
            }
            None => None,
        }
    }
}

impl StrategyConfig {
    pub fn params(&self) -> Vec<(String, String)> {
        self.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
    }
}

impl Config {
    /// Reads and checks a config file; relative plugin and data paths are
    /// resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let read_err = |source| ConfigError::Read { path: name.clone(), source };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: name, size });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let mut config = Self::parse(&text, &name)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_paths(&base);
        Ok(config)
    }

    /// Parses config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: origin.to_string(), message };
        let config: Config = parse_toml(text).map_err(invalid)?;
        if config.strategies.is_empty() && config.plugins.is_none() {
            return Err(invalid("at least one [[strategy]], or a [plugins] dir, is required".into()));
        }
        let BrokerConfig { starting_cash, commission, .. } = &config.broker;
        if *starting_cash < Decimal::ZERO || *starting_cash > Decimal::from(1_000_000_000_000_000_i64) {
            return Err(invalid(format!("key `broker.starting_cash`: expected 0 to 1e15, got {starting_cash}")));
        }
        if commission.rate < Decimal::ZERO || commission.rate > Decimal::ONE {
            return Err(invalid(format!(
                "key `broker.commission.rate`: expected a fraction from 0 to 1, got {}",
                commission.rate
            )));
        }
        if commission.per_order < Decimal::ZERO || commission.per_order > Decimal::from(1_000_000_000) {
            return Err(invalid(format!(
                "key `broker.commission.per_order`: expected 0 to 1e9, got {}",
                commission.per_order
            )));
        }
        config.feed.validate().map_err(invalid)?;
        crate::feed::TimeSpec::new(config.feed.time_format.as_deref(), config.feed.tz.as_deref())
            .map_err(|e| invalid(format!("key `feed.tz` or `feed.time_format`: {e}")))?;
        let fed = config.feed.symbols();
        for strategy in &config.strategies {
            if let Some(stray) = strategy.symbols.iter().find(|s| !fed.contains(s)) {
                let name = strategy.name.as_deref().unwrap_or(&strategy.plugin);
                return Err(invalid(format!("strategy `{name}`: symbol `{stray}` is not one the feed polls")));
            }
        }
        let on_ibkr = Venue::Ibkr;
        let uses_ibkr =
            config.broker.kind == BrokerKind::Venue(on_ibkr) || config.feed.kind == FeedKind::Venue(on_ibkr);
        match &config.ibkr {
            None if uses_ibkr => {
                return Err(invalid(
                    "section `[ibkr]`: the `ibkr` broker and feed need the gateway and account".into(),
                ));
            }
            Some(ibkr) if uses_ibkr => {
                if let Some(problem) = ibkr.problem() {
                    return Err(invalid(problem));
                }
                if (config.broker.kind == BrokerKind::Venue(on_ibkr) && config.broker.base_url.is_some())
                    || (config.feed.kind == FeedKind::Venue(on_ibkr) && config.feed.base_url.is_some())
                {
                    return Err(invalid("key `base_url`: the gateway's address is `ibkr.gateway`".into()));
                }
            }
            _ => {}
        }
        if config.broker.kind != BrokerKind::Paper && config.feed.kind == FeedKind::Replay {
            return Err(invalid("key `broker.kind`: a venue broker needs a live feed, not a replay".into()));
        }
        for (i, hook) in config.webhooks.iter().enumerate() {
            hook.validate(|k| format!("key `webhook[{i}].{k}`")).map_err(invalid)?;
            let known = |s: &String| config.strategies.iter().any(|c| c.name.as_ref().unwrap_or(&c.plugin) == s);
            if hook.strategies.is_empty() || !hook.strategies.iter().all(known) {
                return Err(invalid(format!("key `webhook[{i}].strategies`: name one or more configured strategies")));
            }
        }
        let mut routes: Vec<_> = config.webhooks.iter().map(|h| (h.kind as u8, h.name.as_str())).collect();
        routes.sort();
        if let Some(pair) = routes.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("webhook route `{}` is configured twice", pair[0].1)));
        }
        for (i, sink) in config.sinks.iter().enumerate() {
            sink.validate(|k| format!("key `sink[{i}].{k}`")).map_err(invalid)?;
        }
        let mut names: Vec<String> =
            config.strategies.iter().map(|s| s.name.clone().unwrap_or_else(|| s.plugin.clone())).collect();
        names.sort();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!(
                "strategy name `{}` is used twice; give each [[strategy]] a distinct `name`",
                pair[0]
            )));
        }
        Ok(config)
    }

    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED_DEFAULT, "<embedded default>")
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &str| -> String {
            let path = PathBuf::from(p);
            if path.is_relative() && (p.ends_with(".wasm") || p.ends_with(".csv") || p.contains('/')) {
                base.join(path).display().to_string()
            } else {
                p.to_string()
            }
        };
        for strategy in &mut self.strategies {
            strategy.plugin = resolve(&strategy.plugin);
        }
        if let Some(data) = &self.feed.data
            && !data.starts_with("bundled:")
        {
            self.feed.data = Some(resolve(data));
        }
        for sink in &mut self.sinks {
            if let Some(ca) = sink.ca_file.as_mut().filter(|ca| Path::new(ca.as_str()).is_relative()) {
                *ca = base.join(&ca).display().to_string();
            }
        }
        if Path::new(&self.store.path).is_relative() {
            self.store.path = base.join(&self.store.path).display().to_string();
        }
        if let Some(plugins) = self.plugins.as_mut().filter(|p| p.dir.is_relative()) {
            plugins.dir = base.join(&plugins.dir);
        }
        if let Some(cache) =
            self.runtime.compile_cache.as_mut().filter(|c| !c.is_empty() && Path::new(c.as_str()).is_relative())
        {
            *cache = base.join(&cache).display().to_string();
        }
    }
}

/// Deserializes TOML, naming the dotted key and line of any error.
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| e.to_string().trim_end().to_string())?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.span().map(|span| text.get(..span.start).unwrap_or(text).matches('\n').count() + 1);
        let message = inner.message().trim_end().to_string();
        let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        if path == "." { format!("{message}{at}") } else { format!("key `{path}`: {message}{at}") }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_embedded_default_parses() {
        let config = Config::embedded_default().unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.strategies[0].plugin, "sma-crossover");
    }

    #[test]
    fn a_replay_may_name_its_time_layout_and_zone_and_a_bad_zone_is_refused() {
        let with =
            |keys: &str| EMBEDDED_DEFAULT.replacen("symbol = \"AAPL\"", &format!("symbol = \"AAPL\"\n{keys}"), 1);
        let config = Config::parse(&with("tz = \"Europe/London\"\ntime_format = \"%Y-%m-%d\""), "t.toml").unwrap();
        assert_eq!(config.feed.tz.as_deref(), Some("Europe/London"));
        let err = Config::parse(&with("tz = \"Europe/Atlantis\""), "t.toml").unwrap_err().to_string();
        assert!(err.contains("feed.tz") && err.contains("Europe/Atlantis"), "{err}");
        let err = Config::parse(&with("time_format = \"\""), "t.toml").unwrap_err().to_string();
        assert!(err.contains("must not be empty"), "{err}");
    }

    #[test]
    fn unknown_keys_name_the_key_and_file() {
        let text = format!("{EMBEDDED_DEFAULT}\n[server]\nlisten = \"127.0.0.1:1\"\n");
        let err = Config::parse(&text, "my.toml").unwrap_err().to_string();
        assert!(err.contains("my.toml") && err.contains("duplicate"), "a repeated table is refused: {err}");
        let text = EMBEDDED_DEFAULT.replace("[server]", "[server]\nlistne = 1");
        let err = Config::parse(&text, "my.toml").unwrap_err().to_string();
        assert!(err.contains("my.toml") && err.contains("listne") && err.contains("expected"), "{err}");
    }

    #[test]
    fn a_strategys_limits_are_laid_over_the_hosts() {
        let text = format!(
            "{EMBEDDED_DEFAULT}\n[limits]\ncall_timeout_ms = 250\norders_per_minute = 60\n\n\
             [[strategy]]\nname = \"tight\"\nplugin = \"sma-crossover\"\n\
             limits = {{ orders_per_minute = 5, memory_mib = 32 }}\n"
        );
        let config = Config::parse(&text, "c.toml").unwrap();
        let (default, tight) = (config.budget_of(&config.strategies[0]), config.budget_of(&config.strategies[1]));
        assert_eq!(default.call_timeout, Duration::from_millis(250));
        assert_eq!(default.per_minute.map(|r| r.orders), Some(60));
        assert_eq!(default.memory, 64 << 20, "the built-in default");
        assert_eq!(tight.call_timeout, Duration::from_millis(250), "inherited from [limits]");
        assert_eq!(tight.per_minute.map(|r| r.orders), Some(5));
        assert_eq!(tight.memory, 32 << 20);

        let typo = text.replace("memory_mib = 32", "memroy_mib = 32");
        let err = Config::parse(&typo, "c.toml").unwrap_err().to_string();
        assert!(err.contains("memroy_mib"), "{err}");
        let old = format!("{EMBEDDED_DEFAULT}\n[runtime]\ncall_timeout_ms = 5\n");
        let err = Config::parse(&old, "c.toml").unwrap_err().to_string();
        assert!(err.contains("call_timeout_ms"), "a limit in [runtime] is refused, not ignored: {err}");
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        let text = EMBEDDED_DEFAULT.replace("pace_ms = 25", "pace_ms = \"fast\"");
        let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(err.contains("pace_ms") && err.contains("expected"), "{err}");
        let text = EMBEDDED_DEFAULT.replace("kind = \"replay\"", "kind = \"carrier-pigeon\"");
        let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(err.contains("feed.kind") && err.contains("carrier-pigeon") && err.contains("replay"), "{err}");
    }

    #[test]
    fn refuses_duplicate_strategy_names_and_garbage() {
        let text = format!("{EMBEDDED_DEFAULT}\n[[strategy]]\nplugin = \"sma-crossover\"\nname = \"sma\"\n");
        let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(err.contains("used twice"), "{err}");
        assert!(Config::parse("\u{0}\u{1}garbage[[[", "c.toml").is_err());
        assert!(Config::parse("", "c.toml").is_err());
    }

    #[test]
    fn refuses_out_of_range_money() {
        for (from, to, key) in [
            ("starting_cash = 100000", "starting_cash = -1", "broker.starting_cash"),
            ("starting_cash = 100000", "starting_cash = 100000\ncommission = { rate = 2 }", "broker.commission.rate"),
            ("starting_cash = 100000", "starting_cash = 100000\ncommission = { per_order = \"-1\" }", "per_order"),
        ] {
            let err = Config::parse(&EMBEDDED_DEFAULT.replace(from, to), "c.toml").unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn loads_files_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text =
            EMBEDDED_DEFAULT.replace("bundled:AAPL", "data/x.csv").replace("\"sma-crossover\"", "\"plugins/p.wasm\"");
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.strategies[0].plugin, dir.path().join("plugins/p.wasm").display().to_string());
        assert_eq!(config.feed.data.unwrap(), dir.path().join("data/x.csv").display().to_string());
        assert!(Config::load(&dir.path().join("missing.toml")).unwrap_err().to_string().contains("missing.toml"));
    }
}

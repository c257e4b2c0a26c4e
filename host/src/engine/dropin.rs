//! Drop-in strategies: every `NAME.wasm` in `[plugins] dir` is a strategy
//! instance called NAME, with an optional `NAME.toml` beside it giving its
//! `params`, a `sha256` pin, its `limits` and the `symbols` it hears
//! (without one, the plugin's declared defaults apply, on every symbol of
//! the feed).
//!
//! At start they run with the configured strategies. While the host runs
//! the folder is polled: a new file starts an instance once it has settled
//! (the same size and modification time on two polls, so a half-copied
//! file is never read); a replaced file is hot-swapped by the swap watcher,
//! keeping state; a removed file stops its instance with `on_remove`
//! applied to its orders and positions; a changed `NAME.toml` gives its
//! instance the new settings (a swap to the same build, keeping state), or
//! is refused with the instance running on as it was. Every step is
//! journaled.
//!
//! The control API puts files in the folder too ([`place`]): checked first,
//! then written aside and renamed in, so the watcher never sees half of one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::instances::Instances;
use super::launcher::Starter;
use super::output::Lines;
use super::swap;
use crate::config::{FailurePolicy, ParamValue, StrategyConfig};
use crate::control::ControlError;
use crate::journal::Journal;
use crate::runtime::{LimitsSection, Runtime, RuntimeError, bounded};

/// The `[plugins]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// The folder strategies are dropped into (relative to the config).
    pub dir: PathBuf,
    /// Whether files added or removed while the host runs start or stop
    /// instances; `false` reads the folder at start only.
    #[serde(default = "watching")]
    pub watch: bool,
    /// What happens to a removed strategy's orders and positions.
    #[serde(default)]
    pub on_remove: FailurePolicy,
}

fn watching() -> bool {
    true
}

/// What `NAME.toml` may say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DropInSpec {
    #[serde(default)]
    params: BTreeMap<String, ParamValue>,
    sha256: Option<String>,
    #[serde(default)]
    limits: LimitsSection,
    /// The feed's symbols it hears; all of them when left out.
    #[serde(default)]
    symbols: Vec<String>,
}

/// Why a dropped-in file could not become a strategy.
#[derive(Debug, thiserror::Error)]
pub enum DropInError {
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Spec { path: String, message: String },
    #[error("`{name}` is not a strategy name: use 1 to 64 letters, digits, `-` or `_`")]
    Name { name: String },
}

/// The largest `NAME.toml` read.
const MAX_SPEC_BYTES: u64 = 64 << 10;

/// The strategy `wasm` (a `NAME.wasm` file) stands for.
pub fn spec_of(wasm: &Path) -> Result<StrategyConfig, DropInError> {
    let name = wasm.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if !is_instance_name(&name) {
        return Err(DropInError::Name { name: bounded(&name) });
    }
    let toml = wasm.with_extension("toml");
    let spec = match std::fs::metadata(&toml) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DropInSpec::default(),
        Err(source) => return Err(DropInError::Read { path: toml.display().to_string(), source }),
        Ok(meta) if meta.len() > MAX_SPEC_BYTES => {
            let message = format!("{} bytes; at most {MAX_SPEC_BYTES} are read", meta.len());
            return Err(DropInError::Spec { path: toml.display().to_string(), message });
        }
        Ok(_) => {
            let read = |source| DropInError::Read { path: toml.display().to_string(), source };
            let text = std::fs::read_to_string(&toml).map_err(read)?;
            toml::from_str(&text)
                .map_err(|e| DropInError::Spec { path: toml.display().to_string(), message: bounded(e.message()) })?
        }
    };
    Ok(StrategyConfig {
        name: Some(name),
        plugin: wasm.display().to_string(),
        params: spec.params,
        sha256: spec.sha256,
        limits: spec.limits,
        symbols: spec.symbols,
    })
}

/// Size and modification time of a plugin and of its `.toml`.
type Stamp = (Option<swap::Stamp>, Option<swap::Stamp>);

fn stamp_of(wasm: &Path) -> Stamp {
    (swap::stamp_of(wasm), swap::stamp_of(&wasm.with_extension("toml")))
}

/// A file put in the plugins folder through the control API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placed {
    pub file: String,
    pub sha256: String,
    /// It replaced a file of that name (a hot swap, for a running `.wasm`).
    pub replaced: bool,
}

/// Whether `name` may name an instance: 1 to 64 letters, digits, `-` or `_`.
pub(super) fn is_instance_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// Checks `bytes` as `file` of the plugins folder `dir` and writes it in
/// whole: `NAME.wasm` must be a component the runtime accepts (compiled in
/// its bounded child, so the watcher's load then comes from the cache),
/// `NAME.toml` what a drop-in's spec may say. Blocking.
pub(super) fn place(dir: &Path, file: &str, bytes: &[u8], runtime: &Runtime) -> Result<Placed, ControlError> {
    let invalid = |message: String| ControlError::Invalid { message };
    let (stem, extension) = file.rsplit_once('.').unwrap_or((file, ""));
    if !is_instance_name(stem) || !matches!(extension, "wasm" | "toml") {
        return Err(invalid(format!(
            "`{}` is not a plugin file name: NAME.wasm or NAME.toml, NAME 1 to 64 letters, digits, `-` or `_`",
            bounded(file)
        )));
    }
    if extension == "toml" {
        if bytes.len() as u64 > MAX_SPEC_BYTES {
            return Err(ControlError::TooLarge { size: bytes.len(), limit: MAX_SPEC_BYTES as usize });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| invalid(format!("{file} is not UTF-8")))?;
        toml::from_str::<DropInSpec>(text).map_err(|e| invalid(format!("{file}: {}", bounded(e.message()))))?;
    } else {
        match runtime.load(file, bytes) {
            Ok(_) => {}
            Err(RuntimeError::TooLarge { size, limit, .. }) => return Err(ControlError::TooLarge { size, limit }),
            Err(error) => return Err(invalid(bounded(&error.to_string()))),
        }
    }
    let path = dir.join(file);
    let replaced = path.exists();
    // Aside under a name the watcher ignores, then renamed in at once.
    let aside = dir.join(format!(".{file}.upload-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&aside, bytes)?;
        std::fs::File::open(&aside)?.sync_all()?;
        std::fs::rename(&aside, &path)
    };
    if let Err(error) = write() {
        let _ = std::fs::remove_file(&aside);
        tracing::error!(file = %path.display(), %error, "cannot write an uploaded plugin file");
        return Err(ControlError::Conflict { message: format!("cannot write {file} into the plugins folder") });
    }
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
    Ok(Placed { file: file.to_string(), sha256, replaced })
}

/// The `.wasm` files in `dir`, by strategy name.
fn listing(dir: &Path) -> BTreeMap<String, PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeMap::new() };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
        .collect()
}

/// The strategies in `dir` at start, in name order.
pub fn scan(dir: &Path) -> Result<Vec<StrategyConfig>, DropInError> {
    if let Err(source) = std::fs::read_dir(dir) {
        return Err(DropInError::Read { path: dir.display().to_string(), source });
    }
    listing(dir).values().map(|path| spec_of(path)).collect()
}

/// What the folder watcher reports to.
pub(super) struct Reporting {
    pub journal: Option<Journal>,
    pub lines: Lines,
}

impl Reporting {
    fn note(&self, kind: &str, data: serde_json::Value, line: String) {
        if let Some(journal) = &self.journal {
            journal.record(kind, &data);
        }
        self.lines.send(line);
    }
}

/// Polls `dir` every `every` until aborted: settled new files start
/// instances through `starter`, removed files stop theirs. `known` are the
/// drop-in instances running already; other names (configured strategies)
/// are never touched.
pub(super) async fn watch_dir(
    plugins: PluginsConfig,
    every: Duration,
    starter: std::sync::Arc<Starter>,
    instances: Instances,
    known: impl IntoIterator<Item = String>,
    reporting: Reporting,
) {
    let mut running: HashMap<String, PathBuf> = known.into_iter().map(|n| (n.clone(), plugins.dir.join(n))).collect();
    // Each running instance's `NAME.toml` as last applied, and one that
    // changed, waiting to be seen unchanged.
    let mut specs: HashMap<String, Option<swap::Stamp>> = listing(&plugins.dir)
        .iter()
        .map(|(name, path)| (name.clone(), swap::stamp_of(&path.with_extension("toml"))))
        .collect();
    let mut respecs: HashMap<String, Option<swap::Stamp>> = HashMap::new();
    // A file seen once, waiting to be seen unchanged; one refused, until
    // it changes.
    let mut settling: HashMap<String, Stamp> = HashMap::new();
    let mut refused: HashMap<String, Stamp> = HashMap::new();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let files = listing(&plugins.dir);
        let gone: Vec<String> = running.keys().filter(|name| !files.contains_key(*name)).cloned().collect();
        for name in gone {
            running.remove(&name);
            if let Err(error) = instances.remove(&name, plugins.on_remove).await {
                tracing::warn!(%name, %error, "a removed drop-in strategy did not stop");
            }
        }
        for (name, path) in &files {
            if !running.contains_key(name) {
                continue;
            }
            // A running instance's NAME.toml changed: once it has settled,
            // the instance takes its new settings, keeping its state.
            let stamp = swap::stamp_of(&path.with_extension("toml"));
            if specs.get(name) == Some(&stamp) {
                respecs.remove(name);
                continue;
            }
            if respecs.get(name) != Some(&stamp) {
                respecs.insert(name.clone(), stamp);
                continue;
            }
            respecs.remove(name);
            specs.insert(name.clone(), stamp);
            let file = path.with_extension("toml").display().to_string();
            let applied = match spec_of(path) {
                Ok(spec) => instances.reconfigure(name, &spec).await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match applied {
                Ok(_) => {
                    let line = format!("[{name}] took its new settings from {file}\n");
                    reporting.note(
                        "strategy.reconfigured",
                        serde_json::json!({ "strategy": name, "file": file }),
                        line,
                    );
                }
                Err(error) => {
                    let error = bounded(&error);
                    let line = format!("[{name}] new settings in {file} refused, it runs on as it was: {error}\n");
                    let data = serde_json::json!({ "strategy": name, "file": file, "error": error });
                    reporting.note("strategy.reconfigure_failed", data, line);
                }
            }
        }
        for (name, path) in files {
            // Running already, from the folder or the config.
            if running.contains_key(&name) || instances.contains(&name) {
                continue;
            }
            let stamp = stamp_of(&path);
            if refused.get(&name) == Some(&stamp) {
                continue;
            }
            if settling.get(&name) != Some(&stamp) {
                settling.insert(name, stamp);
                continue;
            }
            settling.remove(&name);
            let (starter, wasm) = (starter.clone(), path.clone());
            let started = tokio::task::spawn_blocking(move || {
                let spec = spec_of(&wasm).map_err(|e| e.to_string())?;
                starter.add(&spec).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            let file = path.display().to_string();
            match started {
                Ok(_) => {
                    let line = format!("[{name}] started from {file}\n");
                    reporting.note("strategy.added", serde_json::json!({ "strategy": name, "file": file }), line);
                    specs.insert(name.clone(), swap::stamp_of(&path.with_extension("toml")));
                    running.insert(name, path);
                }
                Err(error) => {
                    let error = bounded(&error);
                    let line = format!("[{name}] {file} refused: {error}\n");
                    let data = serde_json::json!({ "strategy": name, "file": file, "error": error });
                    reporting.note("strategy.add_failed", data, line);
                    refused.insert(name, stamp);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_and_its_toml_make_a_strategy_and_bad_ones_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("fast-sma.wasm");
        std::fs::write(&wasm, b"").unwrap();
        let bare = spec_of(&wasm).unwrap();
        assert_eq!(bare.name.as_deref(), Some("fast-sma"));
        assert!(bare.params.is_empty() && bare.sha256.is_none());
        std::fs::write(dir.path().join("fast-sma.toml"), "params = { fast = 3 }\nlimits = { orders_per_minute = 9 }\n")
            .unwrap();
        let spec = spec_of(&wasm).unwrap();
        assert_eq!(spec.params["fast"], ParamValue::Integer(3));
        assert_eq!(spec.limits.orders_per_minute, Some(9));
        std::fs::write(dir.path().join("fast-sma.toml"), "parms = {}\n").unwrap();
        let err = spec_of(&wasm).unwrap_err().to_string();
        assert!(err.contains("fast-sma.toml") && err.contains("parms"), "{err}");
        std::fs::write(dir.path().join("fast-sma.toml"), vec![b'#'; 70_000]).unwrap();
        assert!(spec_of(&wasm).unwrap_err().to_string().contains("at most"));
        let err = spec_of(&dir.path().join("bad name!.wasm")).unwrap_err();
        assert!(matches!(err, DropInError::Name { .. }), "{err}");
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        std::fs::remove_file(dir.path().join("fast-sma.toml")).unwrap();
        let found = scan(dir.path()).unwrap();
        assert_eq!(found.len(), 1, "only .wasm files");
        assert!(scan(&dir.path().join("missing")).is_err());
    }
}

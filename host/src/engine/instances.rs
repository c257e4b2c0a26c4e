//! The running strategy instances by name, as the control API reaches them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::fanout::Subscription;
use super::launcher::Starter;
use super::live::{EngineInput, LiveError};
use super::swap::{Setup, SharedSetup, setup_now, start_build};
use crate::config::{FailurePolicy, StrategyConfig};
use crate::control::{Command, ControlError, InstanceState};
use crate::runtime::{RuntimeError, bounded};

/// How long a command waits for its instance (behind a call at its
/// deadline, or a restart) before the operator is told it did not answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One instance as the API reaches it.
#[derive(Debug, Clone)]
struct Entry {
    input: mpsc::Sender<EngineInput>,
    /// What a new build of it starts with.
    setup: SharedSetup,
    /// The feed's symbols it hears.
    subscription: Subscription,
    /// Set while an uploaded build is compiled and swapped in.
    swapping: Arc<AtomicBool>,
}

/// Each running instance's input queue, by name, what uploaded builds are
/// compiled with, and how new instances start.
#[derive(Clone, Default)]
pub struct Instances {
    by_name: Arc<RwLock<HashMap<String, Entry>>>,
    /// Starts new instances, and compiles uploaded builds, once the host runs; weak, since the starter
    /// reaches these instances too.
    starter: Arc<OnceLock<(Weak<Starter>, Option<PathBuf>)>>,
}

/// Clears a swap-in-flight flag however the swap ends.
struct Swapping(Arc<AtomicBool>);

impl Drop for Swapping {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Instances {
    /// From now on, new instances start through `starter`, their files
    /// found in `folder`.
    pub(super) fn start_with(&self, starter: &Arc<Starter>, folder: Option<PathBuf>) {
        let _ = self.starter.set((Arc::downgrade(starter), folder));
    }

    /// Starts a new instance as `spec` says (as a `[[strategy]]` table
    /// would, `name` required): its plugin a bundled one, or a file of the
    /// plugins folder by its bare name, nothing outside it.
    pub async fn add(&self, mut spec: StrategyConfig) -> Result<InstanceState, ControlError> {
        let invalid = |message: &str| ControlError::Invalid { message: message.to_string() };
        let name = spec.name.clone().unwrap_or_default();
        if !super::dropin::is_instance_name(&name) {
            return Err(invalid("a name is 1 to 64 letters, digits, `-` or `_`"));
        }
        if self.contains(&name) {
            return Err(ControlError::Conflict { message: format!("an instance named `{name}` runs already") });
        }
        let (starter, folder) = self.starter()?;
        if spec.plugin.ends_with(".wasm") {
            let bare = !spec.plugin.contains(['/', '\\']) && !spec.plugin.starts_with('.');
            if !bare {
                return Err(invalid("a plugin file is named by its bare name, in the plugins folder"));
            }
            let folder = folder.ok_or_else(|| invalid("no [plugins] folder is configured to take files from"))?;
            let path = folder.join(&spec.plugin);
            if !path.is_file() {
                let message = format!("no file `{}` in the plugins folder", bounded(&spec.plugin));
                return Err(ControlError::Invalid { message });
            }
            spec.plugin = path.display().to_string();
        }
        let started =
            tokio::task::spawn_blocking(move || starter.add(&spec)).await.map_err(|_| ControlError::Stopped)?;
        match started {
            Ok(_) => Ok(InstanceState::Running),
            Err(LiveError::Runtime(RuntimeError::TooLarge { size, limit, .. })) => {
                Err(ControlError::TooLarge { size, limit })
            }
            Err(LiveError::Setup { message }) => Err(ControlError::Conflict { message: bounded(&message) }),
            Err(error) => Err(ControlError::Invalid { message: bounded(&error.to_string()) }),
        }
    }

    pub(super) fn insert(
        &self,
        name: &str,
        input: mpsc::Sender<EngineInput>,
        setup: SharedSetup,
        subscription: Subscription,
    ) {
        if let Ok(mut map) = self.by_name.write() {
            map.insert(name.to_string(), Entry { input, setup, subscription, swapping: Arc::default() });
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.read().is_ok_and(|map| map.contains_key(name))
    }

    /// Forgets every instance, so their engines end once the feed is done.
    pub fn clear(&self) {
        if let Ok(mut map) = self.by_name.write() {
            map.clear();
        }
    }

    /// The starter and the plugins folder, while the host runs.
    fn starter(&self) -> Result<(Arc<Starter>, Option<PathBuf>), ControlError> {
        let message = "this host starts no instances and takes no builds".to_string();
        let (starter, folder) = self.starter.get().cloned().ok_or(ControlError::Conflict { message })?;
        Ok((starter.upgrade().ok_or(ControlError::Stopped)?, folder))
    }

    fn entry(&self, name: &str) -> Result<Entry, ControlError> {
        let entry = self.by_name.read().ok().and_then(|map| map.get(name).cloned());
        entry.ok_or_else(|| ControlError::NoSuchInstance { name: bounded(name) })
    }

    /// Sends `command` to instance `name` and waits for its answer.
    pub async fn command(&self, name: &str, command: Command) -> Result<InstanceState, ControlError> {
        let input = self.entry(name)?.input;
        let (reply, answer) = oneshot::channel();
        let asked = async {
            input.send(EngineInput::Control { command, reply }).await.map_err(|_| ControlError::Stopped)?;
            answer.await.map_err(|_| ControlError::Stopped)?
        };
        tokio::time::timeout(ANSWER_WITHIN, asked).await.unwrap_or_else(|_| Err(not_answering()))
    }

    /// Removes instance `name`: it stops with `on_remove` applied to its
    /// orders and positions, and is no longer reachable here.
    pub async fn remove(&self, name: &str, on_remove: FailurePolicy) -> Result<InstanceState, ControlError> {
        let state = self.command(name, Command::Remove { on_remove }).await?;
        if let Ok(mut map) = self.by_name.write() {
            map.remove(name);
        }
        Ok(state)
    }

    /// Compiles `bytes` (in the bounded compiler child, as every untrusted
    /// build), starts it with the instance's parameters and limits, and
    /// swaps it in between two inputs. Returns the new build's SHA-256.
    pub async fn swap(&self, name: &str, bytes: Vec<u8>) -> Result<String, ControlError> {
        let entry = self.entry(name)?;
        let (starter, _) = self.starter()?;
        let (runtime, clock) = (starter.planner.runtime.clone(), starter.planner.clock.clone());
        if entry.swapping.swap(true, Ordering::AcqRel) {
            return Err(ControlError::Conflict { message: "another swap of this instance is in flight".into() });
        }
        let _swapping = Swapping(entry.swapping.clone());
        let label = format!("upload for {name}");
        let setup = setup_now(&entry.setup);
        swap_in(&entry, runtime, clock, label, bytes, setup).await
    }

    /// Starts instance `name` afresh from its plugin file with what `spec`
    /// says now (a changed `NAME.toml`): its parameters, pin, limits and
    /// symbols, keeping its state, as a swap to the same build. On any
    /// error the instance runs on as it was.
    pub async fn reconfigure(&self, name: &str, spec: &StrategyConfig) -> Result<String, ControlError> {
        let entry = self.entry(name)?;
        let (starter, _) = self.starter()?;
        starter.planner.check_symbols(&spec.symbols).map_err(|e| ControlError::Invalid { message: e.to_string() })?;
        if entry.swapping.swap(true, Ordering::AcqRel) {
            return Err(ControlError::Conflict { message: "a swap of this instance is in flight".into() });
        }
        let _swapping = Swapping(entry.swapping.clone());
        let (runtime, clock) = (starter.planner.runtime.clone(), starter.planner.clock.clone());
        let path = PathBuf::from(&spec.plugin);
        let limit = runtime.config().max_plugin_bytes;
        let read = tokio::task::spawn_blocking(move || crate::runtime::read_plugin(&path, limit));
        let bytes = read
            .await
            .map_err(|_| ControlError::Stopped)?
            .map_err(|e| ControlError::Invalid { message: bounded(&e.to_string()) })?;
        let setup = starter.planner.setup_of(spec);
        let sha256 = swap_in(&entry, runtime, clock, format!("new settings for {name}"), bytes, setup.clone()).await?;
        *entry.setup.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = setup;
        entry.subscription.set(&spec.symbols);
        Ok(sha256)
    }
}

/// Compiles and starts `bytes` with `setup` (off the async threads) and
/// swaps it into `entry`'s engine; returns the build's SHA-256.
async fn swap_in(
    entry: &Entry,
    runtime: Arc<crate::runtime::Runtime>,
    clock: crate::runtime::Clock,
    label: String,
    bytes: Vec<u8>,
    setup: Setup,
) -> Result<String, ControlError> {
    let started = tokio::task::spawn_blocking(move || start_build(&runtime, clock, &label, &bytes, &setup)).await;
    let replacement = match started {
        Ok(Ok(replacement)) => replacement,
        Ok(Err(RuntimeError::TooLarge { size, limit, .. })) => return Err(ControlError::TooLarge { size, limit }),
        Ok(Err(error)) => return Err(ControlError::Invalid { message: bounded(&error.to_string()) }),
        Err(_) => return Err(ControlError::Stopped),
    };
    let sha256 = replacement.sha256.clone();
    let (reply, answer) = oneshot::channel();
    let asked = async {
        let input = EngineInput::Swap { replacement, reply: Some(reply) };
        entry.input.send(input).await.map_err(|_| ControlError::Stopped)?;
        answer.await.map_err(|_| ControlError::Stopped)?.map_err(|e| ControlError::Invalid { message: bounded(&e) })
    };
    tokio::time::timeout(ANSWER_WITHIN, asked).await.unwrap_or_else(|_| Err(not_answering()))?;
    Ok(sha256)
}

impl Instances {}

impl Instances {
    /// Puts `file` (`NAME.wasm` or `NAME.toml`) in the plugins folder,
    /// checked and whole (see [`super::dropin::place`]). A watched folder
    /// then starts, or hot-swaps, instance NAME as it would for a copied
    /// file; otherwise [`Instances::add`] starts it.
    pub async fn upload(&self, file: &str, bytes: Vec<u8>) -> Result<super::dropin::Placed, ControlError> {
        let (starter, folder) = self.starter()?;
        let message = "no [plugins] folder is configured to keep files in";
        let folder = folder.ok_or_else(|| ControlError::Invalid { message: message.into() })?;
        let (runtime, file) = (starter.planner.runtime.clone(), file.to_string());
        tokio::task::spawn_blocking(move || super::dropin::place(&folder, &file, &bytes, &runtime))
            .await
            .map_err(|_| ControlError::Stopped)?
    }
}

fn not_answering() -> ControlError {
    ControlError::Conflict { message: format!("the instance did not answer within {ANSWER_WITHIN:?}") }
}

//! The running strategy instances by name, as the control API reaches them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::live::EngineInput;
use crate::control::{Command, ControlError, InstanceState};

/// How long a command waits for its instance (behind a call at its
/// deadline, or a restart) before the operator is told it did not answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Each running instance's input queue, by name.
#[derive(Debug, Clone, Default)]
pub struct Instances {
    by_name: Arc<RwLock<HashMap<String, mpsc::Sender<EngineInput>>>>,
}

impl Instances {
    pub fn insert(&self, name: &str, input: mpsc::Sender<EngineInput>) {
        if let Ok(mut map) = self.by_name.write() {
            map.insert(name.to_string(), input);
        }
    }

    /// Forgets every instance, so their engines end once the feed is done.
    pub fn clear(&self) {
        if let Ok(mut map) = self.by_name.write() {
            map.clear();
        }
    }

    /// Sends `command` to instance `name` and waits for its answer.
    pub async fn command(&self, name: &str, command: Command) -> Result<InstanceState, ControlError> {
        let input = self.by_name.read().ok().and_then(|map| map.get(name).cloned());
        let input = input.ok_or_else(|| ControlError::NoSuchInstance { name: crate::runtime::bounded(name) })?;
        let (reply, answer) = oneshot::channel();
        let asked = async {
            input.send(EngineInput::Control { command, reply }).await.map_err(|_| ControlError::Stopped)?;
            answer.await.map_err(|_| ControlError::Stopped)?
        };
        tokio::time::timeout(ANSWER_WITHIN, asked).await.unwrap_or_else(|_| {
            Err(ControlError::Conflict { message: format!("the instance did not answer within {ANSWER_WITHIN:?}") })
        })
    }
}

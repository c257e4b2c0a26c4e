//! Probation of a swapped-in build, and its rollback.
//!
//! After a swap the build it replaced is kept, exactly as it was at the
//! swap, and the engine keeps a [`Transcript`] of every input the new build
//! is told. If the new build faults within its probation (a restart, or a
//! quarantine), the old build is put back and hears the transcript again:
//! - inputs the new build handled: the old build's answers are dropped,
//!   because the new build's orders for them already went out (and their
//!   fills are in the transcript too);
//! - the input the new build faulted on, and any after it in the same
//!   engine call: the old build's answers are acted on, since nothing was.
//!
//! A build that is deterministic in its inputs then stands where it would
//! have stood had the swap never happened.

use super::Engine;
use crate::bar::{Bar, Millis};
use crate::order::{Action, Fill};
use crate::strategy::{Rejection, Strategy};

/// Inputs a new build must handle without a fault, unless configured
/// (`[runtime] probation_inputs`).
pub const PROBATION_INPUTS: u32 = 100;

/// One input as a strategy hears it.
#[derive(Debug, Clone)]
pub(super) enum Heard {
    Bars { bars: Vec<Bar> },
    Fills { fills: Vec<Fill> },
    Rejects { rejections: Vec<Rejection> },
    Signal { source: String, payload: String, time: Millis },
}

/// What a build on probation has been told, in order, and the first of
/// those calls it faulted in.
#[derive(Debug, Default)]
pub(super) struct Transcript {
    heard: Vec<Heard>,
    faulted_at: Option<usize>,
}

impl Transcript {
    pub fn hear(&mut self, heard: Heard) {
        self.heard.push(heard);
    }

    /// The call just heard faulted (the first such call counts).
    pub fn faulted(&mut self) {
        if self.faulted_at.is_none() {
            self.faulted_at = self.heard.len().checked_sub(1);
        }
    }
}

/// The build a swap replaced, kept until the new one has shown it runs.
pub(super) struct Probation {
    old: Box<dyn Strategy>,
    /// The old build's SHA-256.
    pub sha256: String,
    inputs_left: u32,
    /// The engine's restart count at the swap: any more is a fault.
    restarts: u32,
}

impl Probation {
    /// Starts the probation of the build just put in `engine` in place of
    /// `old`, for `inputs` inputs; `None` (nothing kept) if `inputs` is 0.
    pub fn start(engine: &mut Engine, old: Box<dyn Strategy>, sha256: &str, inputs: u32) -> Option<Probation> {
        if inputs == 0 {
            return None;
        }
        engine.transcript = Some(Transcript::default());
        let restarts = engine.counts().restarts;
        Some(Probation { old, sha256: sha256.to_string(), inputs_left: inputs, restarts })
    }

    /// After one input: `Some(old)` back if the new build faulted (the
    /// caller rolls back to it), otherwise counts the input and lets the
    /// old build go once the probation is over.
    pub fn judge(slot: &mut Option<Probation>, engine: &mut Engine, faulted: bool) -> Option<Probation> {
        let probation = slot.as_mut()?;
        if faulted || engine.counts().restarts > probation.restarts {
            return slot.take();
        }
        probation.inputs_left = probation.inputs_left.saturating_sub(1);
        if probation.inputs_left == 0 {
            engine.transcript = None;
            *slot = None;
        }
        None
    }

    /// Puts the old build back in `engine`, continuing its lifetime, and
    /// replays the probation's inputs to it. Returns the old build's
    /// SHA-256; an error is the old build's own fault during the replay.
    pub fn roll_back(self, engine: &mut Engine) -> (String, Result<(), super::EngineError>) {
        let transcript = engine.transcript.take().unwrap_or_default();
        drop(engine.replace_strategy(self.old, true));
        (self.sha256, engine.replay(transcript))
    }
}

impl Engine {
    /// Tells the running strategy `transcript` again (see the module docs).
    fn replay(&mut self, transcript: Transcript) -> Result<(), super::EngineError> {
        let acted_from = transcript.faulted_at.unwrap_or(transcript.heard.len());
        for (index, heard) in transcript.heard.into_iter().enumerate() {
            let time = match &heard {
                Heard::Signal { time, .. } => *time,
                _ => self.last_time,
            };
            let actions: Vec<Action> = match heard {
                Heard::Bars { bars } => self
                    .call("on-bars", |s| s.on_bars(&bars))?
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, a)| a)
                    .collect(),
                Heard::Fills { fills } => self.call("on-fills", |s| s.on_fills(&fills))?.unwrap_or_default(),
                Heard::Rejects { rejections } => {
                    self.call("on-rejects", |s| s.on_rejects(&rejections))?.unwrap_or_default()
                }
                Heard::Signal { source, payload, time } => {
                    self.call("on-signal", |s| s.on_signal(&source, &payload, time))?.unwrap_or_default()
                }
            };
            if index >= acted_from {
                for action in actions {
                    self.apply(action, time);
                }
            }
        }
        self.feedback()
    }
}

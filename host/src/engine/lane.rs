//! A strategy's engine queue as the venue desk reaches it.
//!
//! The desk serves every strategy on a venue from one task. Were it to wait
//! on one engine's full queue (a strategy stuck in a long call, or
//! restarting), every other strategy's fills would wait too. A lane never
//! waits: it keeps what the engine has not yet taken, in order, and a task
//! of its own hands it over. What a lane can hold is bounded by what the
//! strategy can cause: fills and ends of its own orders, which its orders
//! per minute cap; and fills told through a lane but not yet committed are
//! told again after a crash (the store marks them told only on commit).

use tokio::sync::mpsc;

use super::live::EngineInput;

/// A never-waiting sender to one engine.
#[derive(Debug, Clone)]
pub struct Lane {
    tx: mpsc::UnboundedSender<EngineInput>,
}

impl Lane {
    /// Starts the task that hands the lane's inputs to `engine`, in order;
    /// it ends when the engine has stopped or every clone is dropped.
    pub fn new(engine: mpsc::Sender<EngineInput>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                if engine.send(input).await.is_err() {
                    break;
                }
            }
        });
        Self { tx }
    }

    /// Queues `input` for the engine; dropped only if the engine has stopped.
    pub fn send(&self, input: EngineInput) {
        let _ = self.tx.send(input);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn signal(n: i64) -> EngineInput {
        EngineInput::Signal { source: "t".into(), payload: String::new(), time: n, inbox: None }
    }

    fn time_of(input: EngineInput) -> i64 {
        match input {
            EngineInput::Signal { time, .. } => time,
            other => panic!("{other:?}"),
        }
    }

    /// One engine that takes nothing does not hold up another, and each
    /// gets its inputs in order once it takes them.
    #[tokio::test]
    async fn a_full_engine_queue_holds_up_only_its_own_lane() {
        let (stuck_tx, mut stuck_rx) = mpsc::channel(1);
        let (free_tx, mut free_rx) = mpsc::channel(1);
        let (stuck, free) = (Lane::new(stuck_tx), Lane::new(free_tx));
        for n in 0..5 {
            stuck.send(signal(n));
        }
        free.send(signal(100));
        let got = tokio::time::timeout(Duration::from_secs(10), free_rx.recv()).await.unwrap().unwrap();
        assert_eq!(time_of(got), 100);
        for n in 0..5 {
            assert_eq!(time_of(stuck_rx.recv().await.unwrap()), n);
        }
    }
}

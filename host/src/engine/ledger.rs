//! What a paper instance has working and has filled, for the control API:
//! a live venue's orders and fills are in the store, the paper broker's
//! only in its engine, so each paper engine keeps this copy up to date
//! after every input.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::Engine;
use crate::order::{Fill, Order};

/// Fills kept per instance, newest last.
const KEPT_FILLS: usize = 1_000;

/// One paper instance's working orders and latest fills.
#[derive(Debug, Default)]
pub struct PaperLedger {
    pub working: Vec<Order>,
    pub fills: VecDeque<Fill>,
    /// The engine's fills already copied.
    copied: usize,
}

/// A ledger shared by an engine's thread and the API.
pub type SharedLedger = Arc<Mutex<PaperLedger>>;

impl PaperLedger {
    /// Takes what `engine` has working now and the fills since last time.
    pub(super) fn follow(&mut self, engine: &Engine) {
        self.working = engine.working_orders();
        let fills = engine.fills();
        for fill in fills.iter().skip(self.copied) {
            if self.fills.len() == KEPT_FILLS {
                self.fills.pop_front();
            }
            self.fills.push_back(fill.clone());
        }
        self.copied = fills.len();
    }
}

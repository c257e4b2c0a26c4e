//! Live trading on a venue: the engine's orders go through the router, and
//! fills come back from the reconciler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use tokio::sync::{Notify, mpsc};

use super::live::EngineInput;
use crate::bar::now_ms;
use crate::broker::{Execution, ExecutionError, ExecutionEvent};
use crate::order::{Fill, IntentId, Order};
use crate::reconcile::Reconciler;
use crate::router::{Routed, Router, client_order_id};
use crate::store::{FillRecord, Store};

/// What an engine asks of its venue.
#[derive(Debug)]
pub enum RouteRequest {
    Submit { strategy: String, order: Order },
    Cancel { strategy: String, intent_id: IntentId },
}

/// Requests an engine made during one input, held until the engine's
/// thread has committed them with the strategy's state.
pub type RouteOutbox = Arc<Mutex<Vec<RouteRequest>>>;

/// The engine's side of a venue: submits and cancels wait in the outbox
/// for the engine's thread to commit and forward them to the router task,
/// and open orders are tracked until the reconciler reports them done.
pub struct RoutedExecution {
    strategy: String,
    outbox: RouteOutbox,
    /// Signed quantity still open, per intent.
    open: HashMap<IntentId, (Arc<str>, Decimal)>,
}

impl RoutedExecution {
    pub fn new(strategy: String, outbox: RouteOutbox) -> Self {
        Self { strategy, outbox, open: HashMap::new() }
    }

    fn push(&self, request: RouteRequest) {
        self.outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(request);
    }
}

impl Execution for RoutedExecution {
    fn submit(&mut self, order: Order) -> Result<(), ExecutionError> {
        let signed = order.intent.side.sign() * order.intent.qty;
        self.open.insert(order.intent_id, (order.intent.symbol.clone(), signed));
        self.push(RouteRequest::Submit { strategy: self.strategy.clone(), order });
        Ok(())
    }

    fn cancel(&mut self, intent_id: IntentId) -> bool {
        let open = self.open.contains_key(&intent_id);
        if open {
            self.push(RouteRequest::Cancel { strategy: self.strategy.clone(), intent_id });
        }
        open
    }

    fn on_bar(&mut self, _: &crate::bar::Bar, _: &mut Vec<ExecutionEvent>) {}

    fn open_exposure(&self, symbol: &str) -> Decimal {
        self.open.values().filter(|(s, _)| **s == *symbol).map(|(_, q)| *q).sum()
    }

    fn open_orders(&self) -> usize {
        self.open.len()
    }

    fn on_event(&mut self, event: &ExecutionEvent) {
        match event {
            ExecutionEvent::Filled { fill } => {
                if let Some((_, remaining)) = self.open.get_mut(&fill.intent_id) {
                    *remaining -= fill.side.sign() * fill.qty;
                    if remaining.is_zero() {
                        self.open.remove(&fill.intent_id);
                    }
                }
            }
            ExecutionEvent::Expired { intent_id, .. } => {
                self.open.remove(intent_id);
            }
        }
    }
}

/// The router and reconciler of one venue, wired to the engines by
/// strategy instance name (`name@venue`).
pub struct VenueDesk {
    pub router: Arc<Router>,
    pub reconciler: Arc<Reconciler>,
    pub store: Arc<Store>,
    pub venue: &'static str,
    pub engines: HashMap<String, mpsc::Sender<EngineInput>>,
    pub sync_every: Duration,
}

impl VenueDesk {
    /// Instance name of a strategy on this venue; keys client order ids.
    pub fn instance(strategy: &str, venue: &str) -> String {
        format!("{strategy}@{venue}")
    }

    /// Runs until `requests` closes: first sends what engines committed
    /// before a crash and never handed over, then routes orders one at a
    /// time, and syncs every `sync_every` (and soon after each accepted order).
    pub async fn run(self, mut requests: mpsc::UnboundedReceiver<RouteRequest>) {
        let desk = Arc::new(self);
        let wake = Arc::new(Notify::new());
        desk.route_queued().await;
        desk.deliver_missed().await;
        let syncer = {
            let (desk, wake) = (desk.clone(), wake.clone());
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(desk.sync_every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = interval.tick() => {}
                        () = wake.notified() => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                    desk.sync_once().await;
                }
            })
        };
        while let Some(request) = requests.recv().await {
            match request {
                RouteRequest::Submit { strategy, order } => {
                    if desk.route(&strategy, order).await {
                        wake.notify_one();
                    }
                }
                RouteRequest::Cancel { strategy, intent_id } => desk.cancel(&strategy, intent_id).await,
            }
        }
        syncer.abort();
    }

    /// Routes the orders left `queued` by a previous run.
    async fn route_queued(&self) {
        let queued = match self.store.queued_orders(self.venue) {
            Ok(queued) => queued,
            Err(error) => {
                tracing::error!(%error, venue = self.venue, "cannot read queued orders");
                return;
            }
        };
        for record in queued {
            let Some(strategy) = record.strategy.strip_suffix(&format!("@{}", self.venue)) else { continue };
            match record.intent() {
                Ok(intent) => {
                    tracing::info!(client_order_id = %record.client_order_id, "sending an order queued before a restart");
                    let order = Order { intent_id: record.intent, intent, placed_at: record.created };
                    self.route(strategy, order).await;
                }
                Err(error) => {
                    tracing::error!(%error, client_order_id = %record.client_order_id, "queued order unreadable")
                }
            }
        }
    }

    /// Tells each strategy of the fills it has not heard of: recorded just
    /// before a crash, or while the host was down.
    async fn deliver_missed(&self) {
        let fills = match self.store.undelivered_fills(self.venue) {
            Ok(fills) => fills,
            Err(error) => {
                tracing::error!(%error, venue = self.venue, "cannot read undelivered fills");
                return;
            }
        };
        let mut missed: HashMap<String, (Vec<Fill>, Vec<String>)> = HashMap::new();
        let mut orphans = Vec::new();
        for record in fills {
            match self.fill_for_engine(&record) {
                Some((strategy, fill)) if self.engines.contains_key(&strategy) => {
                    let entry = missed.entry(strategy).or_default();
                    entry.0.push(fill);
                    entry.1.push(record.fill_id);
                }
                // No running strategy placed it: nobody to tell.
                _ => orphans.push(record.fill_id),
            }
        }
        if let Err(error) = self.store.mark_delivered(self.venue, &orphans) {
            tracing::warn!(%error, "cannot mark fills without a strategy");
        }
        for (strategy, (fills, fill_ids)) in missed {
            if let Some(engine) = self.engines.get(&strategy) {
                let _ = engine.send(EngineInput::Missed { fills, fill_ids }).await;
            }
        }
    }

    /// The strategy (by name) that placed a recorded fill's order, and the
    /// fill as its engine sees it.
    fn fill_for_engine(&self, fill: &FillRecord) -> Option<(String, Fill)> {
        let order = self.store.order(&fill.client_order_id).ok().flatten()?;
        let strategy = order.strategy.strip_suffix(&format!("@{}", self.venue))?.to_string();
        let fill = Fill {
            intent_id: order.intent,
            symbol: Arc::from(fill.symbol.as_str()),
            side: fill.side,
            qty: fill.qty,
            price: fill.price,
            commission: fill.commission,
            time: fill.time,
        };
        Some((strategy, fill))
    }

    /// Routes one order; `true` if the venue took it.
    async fn route(&self, strategy: &str, order: Order) -> bool {
        let instance = Self::instance(strategy, self.venue);
        match self.router.submit(&instance, order.intent_id, &order.intent, now_ms()).await {
            Ok(Routed::Accepted { .. }) => true,
            Ok(Routed::AlreadyRouted { .. }) => false,
            Ok(Routed::Rejected { reason, .. }) => {
                let event =
                    ExecutionEvent::Expired { intent_id: order.intent_id, symbol: order.intent.symbol.clone(), reason };
                self.tell(strategy, vec![event], Vec::new()).await;
                false
            }
            Err(error) => {
                // Left `unknown` or `pending` in the store; the next syncs settle it.
                tracing::error!(%error, strategy, "order not settled");
                false
            }
        }
    }

    async fn cancel(&self, strategy: &str, intent_id: IntentId) {
        let coid = client_order_id(&Self::instance(strategy, self.venue), intent_id);
        let order = self.store.order(&coid).ok().flatten();
        if let Some((symbol, venue_id)) = order.and_then(|o| Some((o.symbol, o.venue_order_id?)))
            && let Err(error) = self.router.cancel(&symbol, &venue_id).await
        {
            tracing::warn!(%error, %coid, "cancel failed");
        }
    }

    /// One reconciliation; its fills and ended orders go to their engines.
    async fn sync_once(&self) {
        let report = match self.reconciler.sync(now_ms()).await {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!(%error, venue = self.venue, "sync failed; retrying at the next interval");
                return;
            }
        };
        for record in report.fills {
            let Some((strategy, fill)) = self.fill_for_engine(&record) else { continue };
            let events = vec![ExecutionEvent::Filled { fill }];
            self.tell(&strategy, events, vec![record.fill_id]).await;
        }
        for (coid, status) in report.ended {
            let Ok(Some(order)) = self.store.order(&coid) else { continue };
            let Some(strategy) = order.strategy.strip_suffix(&format!("@{}", self.venue)) else { continue };
            let event = ExecutionEvent::Expired {
                intent_id: order.intent,
                symbol: Arc::from(order.symbol.as_str()),
                reason: status,
            };
            self.tell(strategy, vec![event], Vec::new()).await;
        }
    }

    /// Hands venue events to a strategy's engine; `fill_ids` are the
    /// venue's ids of the fills among them.
    async fn tell(&self, strategy: &str, events: Vec<ExecutionEvent>, fill_ids: Vec<String>) {
        if let Some(engine) = self.engines.get(strategy) {
            let _ = engine.send(EngineInput::Executed { events, fill_ids }).await;
        }
    }
}

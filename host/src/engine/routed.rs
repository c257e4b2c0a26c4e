//! Live trading on a venue: the engine's orders go through the router, and
//! fills come back from the reconciler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use tokio::sync::mpsc;

use super::lane::Lane;
use super::live::EngineInput;
use crate::bar::now_ms;
use crate::broker::{Execution, ExecutionError, ExecutionEvent, OrderNews};
use crate::order::{Fill, IntentId, Order, OrderStatus};
use crate::reconcile::Reconciler;
use crate::router::{Routed, Router, client_order_id};
use crate::store::{FillRecord, OrderRecord, Store};
use crate::stream::Update;

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

    fn open_orders(&self) -> Vec<IntentId> {
        let mut open: Vec<IntentId> = self.open.keys().copied().collect();
        open.sort_unstable();
        open
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
///
/// One task does both, so no order is sent while a sync reads the venue
/// (see [`crate::reconcile`]), and the store is the queue: engines commit
/// their orders as `queued`, and the desk sends them in the order they were
/// decided, one at a time, with syncs in between. After a restart the
/// backlog is sent the same way, so syncs (and fills) go on while it drains.
pub struct VenueDesk {
    pub router: Arc<Router>,
    pub reconciler: Arc<Reconciler>,
    pub store: Arc<Store>,
    pub venue: &'static str,
    /// Each strategy's engine, by a lane that never waits on it.
    pub engines: Lanes,
    pub sync_every: Duration,
    /// Orders by outcome, routing time, fills and corrections.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The venue's pushed order updates, when it streams them.
    pub updates: Option<mpsc::Receiver<Update<OrderNews>>>,
}

/// The next update of `updates`, or never when there is no stream (or it ended).
async fn next_update(updates: &mut Option<mpsc::Receiver<Update<OrderNews>>>) -> Update<OrderNews> {
    match updates {
        Some(updates) => match updates.recv().await {
            Some(update) => update,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Each strategy's lane, by name; strategies added while the host runs
/// join it.
pub type Lanes = Arc<std::sync::RwLock<HashMap<String, Lane>>>;

/// How soon after an accepted order the venue is asked about it.
const SYNC_AFTER_ORDER: Duration = Duration::from_millis(200);

impl VenueDesk {
    fn lane(&self, strategy: &str) -> Option<Lane> {
        self.engines.read().ok().and_then(|lanes| lanes.get(strategy).cloned())
    }

    /// Instance name of a strategy on this venue; keys client order ids.
    pub fn instance(strategy: &str, venue: &str) -> String {
        format!("{strategy}@{venue}")
    }

    /// Runs until `requests` closes (every engine is gone) or the task is
    /// dropped. Dropping it at any await is safe: every order is in the
    /// store, as `queued`, `pending` or `unknown`, before anything is sent,
    /// and the next start carries it on.
    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<RouteRequest>) {
        let mut updates = self.updates.take();
        self.deliver_missed().await;
        let mut next_sync = tokio::time::Instant::now();
        // Whether the last look at the queue found nothing to send.
        let mut idle = false;
        // The stream (re)connected and the sync that backfills it is due: it
        // is reported listening once that sync went through.
        let mut backfill = false;
        loop {
            if tokio::time::Instant::now() >= next_sync {
                if self.sync_round().await && std::mem::take(&mut backfill) {
                    self.metrics.tally.stream(self.venue, None);
                }
                next_sync = tokio::time::Instant::now() + self.sync_every;
                idle = false;
            }
            if !idle {
                match self.route_next().await {
                    Some(accepted) => {
                        if accepted {
                            next_sync = next_sync.min(tokio::time::Instant::now() + SYNC_AFTER_ORDER);
                        }
                        continue;
                    }
                    None => idle = true,
                }
            }
            tokio::select! {
                () = tokio::time::sleep_until(next_sync) => {}
                request = requests.recv() => match request {
                    None => return,
                    Some(RouteRequest::Submit { strategy, order }) => {
                        self.enqueue(&strategy, &order);
                        idle = false;
                    }
                    Some(RouteRequest::Cancel { strategy, intent_id }) => self.cancel(&strategy, intent_id).await,
                },
                update = next_update(&mut updates) => match update {
                    // Connected, first or again: a full sync backfills
                    // whatever the stream missed.
                    Update::Connected => {
                        backfill = true;
                        next_sync = tokio::time::Instant::now();
                    }
                    Update::Down { error } => self.metrics.tally.stream(self.venue, Some(&error)),
                    Update::Item { item } => self.apply(item).await,
                },
            }
        }
    }

    /// Makes sure an order an engine handed over is in the store: it is
    /// already, unless committing the input failed.
    fn enqueue(&self, strategy: &str, order: &Order) {
        let instance = Self::instance(strategy, self.venue);
        let record = OrderRecord::for_intent(
            self.venue,
            &instance,
            order.intent_id,
            &order.intent,
            OrderStatus::Queued,
            order.placed_at,
        );
        if let Err(error) = self.store.insert_order(&record) {
            tracing::error!(%error, client_order_id = %record.client_order_id, "cannot queue an order");
        }
    }

    /// Sends the oldest queued order, if there is one; `Some(true)` if the
    /// venue took it, `None` if nothing was queued or the venue cannot
    /// take orders now.
    async fn route_next(&self) -> Option<bool> {
        let record = match self.store.queued_orders_up_to(self.venue, 1) {
            Ok(mut queued) => queued.pop()?,
            Err(error) => {
                tracing::error!(%error, venue = self.venue, "cannot read queued orders");
                return None;
            }
        };
        self.route(record).await
    }

    /// What the venue pushed about an order, settled as a sync would settle
    /// that order; its fill or end goes to its engine at once.
    async fn apply(&self, news: OrderNews) {
        let settled = match &news {
            OrderNews::State { order } => self.reconciler.apply(order, now_ms()),
            OrderNews::Changed { symbol, venue_order_id } => {
                self.reconciler.refresh(symbol, venue_order_id, now_ms()).await
            }
        };
        match settled {
            Ok(report) => self.deliver(report).await,
            // The next sync reads the same order.
            Err(error) => tracing::warn!(%error, venue = self.venue, ?news, "cannot settle a pushed update"),
        }
    }

    /// One sync; its fills and ended orders go to their engines, even if
    /// it stopped part way, then the orders the venue turned out not to
    /// have are sent again.
    /// Whether it went through.
    async fn sync_round(&self) -> bool {
        let (report, synced) = match self.reconciler.sync(now_ms()).await {
            Ok(report) => {
                tracing::debug!(venue = self.venue, fills = report.fills.len(), "synced");
                self.metrics.tally.synced(self.venue, report.corrections.len());
                (report, true)
            }
            Err(failed) => {
                let error = &failed.source;
                tracing::warn!(%error, venue = self.venue, "sync failed; retrying at the next interval");
                self.metrics.tally.sync_failed(self.venue, &error.to_string());
                (failed.report, false)
            }
        };
        self.deliver(report).await;
        synced
    }

    /// Tells the engines what a sync (or a pushed update) found: fills and
    /// ended orders; then sends again the orders the venue turned out not
    /// to have.
    async fn deliver(&self, report: crate::reconcile::SyncReport) {
        self.count_fills(report.fills.len());
        if !report.corrections.is_empty() {
            let labels = crate::metrics::VenueLabels { venue: self.venue.to_string() };
            self.metrics.corrections.get_or_create(&labels).inc_by(report.corrections.len() as u64);
        }
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
                reason: status.to_string(),
            };
            self.tell(strategy, vec![event], Vec::new()).await;
        }
        for record in report.unresolved {
            tracing::info!(client_order_id = %record.client_order_id, "the venue lacks an order whose fate was unknown: sending it again");
            if self.route(record).await.is_none() {
                // The venue is down or halted: the rest waits for the next sync.
                break;
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
                Some((strategy, fill)) if self.lane(&strategy).is_some() => {
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
            if let Some(engine) = self.lane(&strategy) {
                engine.send(EngineInput::Missed { fills, fill_ids });
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

    fn count_fills(&self, fills: usize) {
        let labels = crate::metrics::VenueLabels { venue: self.venue.to_string() };
        self.metrics.fills.get_or_create(&labels).inc_by(fills as u64);
    }

    /// Carries one stored order forward. `Some(true)` if the venue took
    /// it, `Some(false)` if it is settled otherwise (refused, or routed
    /// before), `None` if it is still open-ended: the venue is unreachable
    /// or halted, and the order is kept for later.
    async fn route(&self, record: OrderRecord) -> Option<bool> {
        let strategy = record.strategy.strip_suffix(&format!("@{}", self.venue)).map(str::to_string);
        let (intent_id, symbol) = (record.intent, Arc::<str>::from(record.symbol.as_str()));
        // Every line logged while the order is routed names it and its instance.
        let span = tracing::info_span!(
            "order",
            client_order_id = %record.client_order_id,
            instance = %record.strategy,
            venue = self.venue
        );
        let started = std::time::Instant::now();
        let routed = tracing::Instrument::instrument(self.router.route(record, now_ms()), span.clone()).await;
        let outcome = match &routed {
            Ok(Routed::Accepted { .. }) => "accepted",
            Ok(Routed::AlreadyRouted { .. }) => "already_routed",
            Ok(Routed::Rejected { .. }) => "rejected",
            Ok(Routed::Held { .. }) => "held",
            Err(_) => "unsettled",
        };
        self.metrics.order(self.venue, outcome, started.elapsed());
        if let Ok(Routed::Accepted { fill: Some(_), .. }) = &routed {
            self.count_fills(1);
        }
        span.in_scope(|| tracing::info!(outcome, "order routed"));
        match routed {
            Ok(Routed::Accepted { fill, .. }) => {
                // Executions the answer already reported, recorded by the router.
                if let Some(record) = fill
                    && let Some((strategy, fill)) = self.fill_for_engine(&record)
                {
                    self.tell(&strategy, vec![ExecutionEvent::Filled { fill }], vec![record.fill_id]).await;
                }
                Some(true)
            }
            Ok(Routed::AlreadyRouted { .. }) => Some(false),
            Ok(Routed::Rejected { reason, .. }) => {
                if let Some(strategy) = strategy {
                    let event = ExecutionEvent::Expired { intent_id, symbol, reason };
                    self.tell(&strategy, vec![event], Vec::new()).await;
                }
                Some(false)
            }
            Ok(Routed::Held { reason, client_order_id }) => {
                tracing::warn!(%client_order_id, %reason, "order held until the venue takes orders again");
                None
            }
            Err(error) => {
                // Left `pending` or `unknown` in the store; the next sync
                // looks it up and sends it again if the venue lacks it.
                tracing::error!(%error, venue = self.venue, "order not settled yet");
                None
            }
        }
    }

    /// Cancels an order: at the venue once it is there; in the store if it
    /// was never sent, so it never will be (the strategy hears it ended).
    async fn cancel(&self, strategy: &str, intent_id: IntentId) {
        let coid = client_order_id(&Self::instance(strategy, self.venue), intent_id);
        let Ok(Some(order)) = self.store.order(&coid) else { return };
        if order.status == OrderStatus::Queued {
            let now = now_ms();
            let data = serde_json::json!({ "client_order_id": coid, "before_sent": true });
            let done = self
                .store
                .update_order(&coid, OrderStatus::Canceled, None, now)
                .and_then(|()| self.store.append_event(now, "order.canceled", Some(self.venue), &data.to_string()));
            if let Err(error) = done {
                tracing::warn!(%error, %coid, "cannot cancel an order that was never sent");
                return;
            }
            let reason = "canceled before it was sent".to_string();
            let event = ExecutionEvent::Expired { intent_id, symbol: Arc::from(order.symbol.as_str()), reason };
            self.tell(strategy, vec![event], Vec::new()).await;
            return;
        }
        if let Some(venue_id) = &order.venue_order_id
            && let Err(error) = self.router.cancel(&order.symbol, venue_id).await
        {
            tracing::warn!(%error, %coid, "cancel failed");
        }
    }

    /// Hands venue events to a strategy's engine; `fill_ids` are the
    /// venue's ids of the fills among them.
    async fn tell(&self, strategy: &str, events: Vec<ExecutionEvent>, fill_ids: Vec<String>) {
        if let Some(engine) = self.lane(strategy) {
            engine.send(EngineInput::Executed { events, fill_ids });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::scripted::ScriptedBroker;
    use crate::order::OrderIntent;
    use crate::risk::RiskGate;
    use crate::router::RouterConfig;

    const ONE: IntentId = crate::order::OrderRef { lifetime: 1, id: 1 };

    /// A cancel that reaches the desk before its order was sent keeps the
    /// order from ever being sent, and the strategy hears it ended.
    #[tokio::test]
    async fn an_order_canceled_before_it_was_sent_is_never_sent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("d.db")).unwrap());
        let broker = Arc::new(ScriptedBroker::default());
        let gate = RiskGate::persistent(store.clone(), &["scripted"]).unwrap();
        let router = Router::new(broker.clone(), store.clone(), RouterConfig::default()).with_gate(gate.clone());
        let reconciler = Reconciler::new(broker.clone(), store.clone(), gate, Decimal::ZERO);
        let (tx, mut rx) = mpsc::channel(8);
        let desk = VenueDesk {
            router: Arc::new(router),
            reconciler: Arc::new(reconciler),
            store: store.clone(),
            venue: "scripted",
            engines: Arc::new(std::sync::RwLock::new(HashMap::from([("s".to_string(), Lane::new(tx))]))),
            sync_every: Duration::from_secs(60),
            metrics: crate::metrics::Metrics::detached(),
            updates: None,
        };
        let intent = OrderIntent::market("AAPL".into(), crate::order::Side::Buy, Decimal::ONE);
        let queued = OrderRecord::for_intent("scripted", "s@scripted", ONE, &intent, OrderStatus::Queued, 1);
        store.insert_order(&queued).unwrap();

        desk.cancel("s", ONE).await;
        assert_eq!(store.order(&queued.client_order_id).unwrap().unwrap().status, OrderStatus::Canceled);
        let told = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert!(
            matches!(&told, EngineInput::Executed { events, .. }
                if matches!(&events[..], [ExecutionEvent::Expired { intent_id: ONE, .. }])),
            "{told:?}"
        );
        assert_eq!(desk.route_next().await, None, "nothing left to send");
        assert!(broker.book.lock().unwrap().submitted.is_empty());
    }
}

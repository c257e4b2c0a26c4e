//! An in-memory venue for unit tests, scripted step by step: errors to
//! return next, and a hook that runs after each order lookup (to make a
//! fill land between two reads of the sync).

use std::collections::VecDeque;
use std::sync::Mutex;

use rust_decimal::Decimal;

use super::{Broker, OrderRequest, VenueAccount, VenueOrder, VenuePosition};
use crate::order::OrderStatus;
use crate::venue::VenueError;

type Hook = Box<dyn FnMut(&mut Book, &str) + Send>;

/// The venue's orders and positions.
#[derive(Default)]
pub(crate) struct Book {
    pub orders: Vec<VenueOrder>,
    pub positions: Vec<VenuePosition>,
    /// Every order request that reached the venue, by client order id.
    pub submitted: Vec<String>,
    /// Fill market orders at once, at this price.
    pub fill_at: Option<Decimal>,
}

impl Book {
    /// Fills `qty` more of the order `client_order_id` at `price`.
    pub fn fill(&mut self, client_order_id: &str, qty: Decimal, price: Decimal) {
        let Some(order) = self.orders.iter_mut().find(|o| o.client_order_id == client_order_id) else { return };
        let before = order.filled_qty * order.filled_avg_price.unwrap_or_default();
        order.filled_qty += qty;
        order.filled_avg_price = Some((before + qty * price) / order.filled_qty);
        order.status = if order.filled_qty >= order.qty { OrderStatus::Filled } else { OrderStatus::PartiallyFilled };
        let signed = order.side.sign() * qty;
        let symbol = order.symbol.clone();
        match self.positions.iter_mut().find(|p| p.symbol == symbol) {
            Some(position) => position.qty += signed,
            None => self.positions.push(VenuePosition { symbol, qty: signed, avg_price: price }),
        }
    }
}

#[derive(Default)]
pub(crate) struct ScriptedBroker {
    pub book: Mutex<Book>,
    pub submit_errors: Mutex<VecDeque<VenueError>>,
    /// Errors for the next reads (lookups, open orders, positions, account).
    pub read_errors: Mutex<VecDeque<VenueError>>,
    pub after_lookup: Mutex<Option<Hook>>,
}

impl ScriptedBroker {
    pub fn after_lookup(&self, hook: impl FnMut(&mut Book, &str) + Send + 'static) {
        *self.after_lookup.lock().unwrap() = Some(Box::new(hook));
    }

    fn read_error(&self) -> Result<(), VenueError> {
        match self.read_errors.lock().unwrap().pop_front() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

pub(crate) fn unauthorized() -> VenueError {
    VenueError::Unauthorized { venue: "scripted", endpoint: "/".into(), status: 401, message: "bad key".into() }
}

pub(crate) fn unknown() -> VenueError {
    VenueError::Unknown { venue: "scripted", endpoint: "/".into(), message: "timed out".into() }
}

#[async_trait::async_trait]
impl Broker for ScriptedBroker {
    fn venue(&self) -> &'static str {
        "scripted"
    }

    async fn submit(&self, order: &OrderRequest) -> Result<VenueOrder, VenueError> {
        if let Some(error) = self.submit_errors.lock().unwrap().pop_front() {
            return Err(error);
        }
        let mut book = self.book.lock().unwrap();
        book.submitted.push(order.client_order_id.clone());
        if book.orders.iter().any(|o| o.client_order_id == order.client_order_id) {
            return Err(VenueError::Rejected {
                venue: "scripted",
                endpoint: "/orders".into(),
                status: 422,
                code: None,
                message: "duplicate client order id".into(),
            });
        }
        let placed = VenueOrder {
            venue_order_id: format!("v-{}", book.orders.len() + 1),
            client_order_id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side: order.side,
            qty: order.qty,
            filled_qty: Decimal::ZERO,
            filled_avg_price: None,
            status: OrderStatus::Accepted,
        };
        book.orders.push(placed);
        if let Some(price) = book.fill_at {
            book.fill(&order.client_order_id, order.qty, price);
        }
        // Answered as it stands: filled at once with `fill_at`.
        Ok(book.orders.last().cloned().expect("just pushed"))
    }

    async fn order_by_client_id(&self, _: &str, client_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        self.read_error()?;
        let mut book = self.book.lock().unwrap();
        let found = book.orders.iter().find(|o| o.client_order_id == client_order_id).cloned();
        if let Some(hook) = self.after_lookup.lock().unwrap().as_mut() {
            hook(&mut book, client_order_id);
        }
        Ok(found)
    }

    async fn order_by_venue_id(&self, _: &str, venue_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        self.read_error()?;
        let mut book = self.book.lock().unwrap();
        let found = book.orders.iter().find(|o| o.venue_order_id == venue_order_id).cloned();
        let client_order_id = found.as_ref().map(|o| o.client_order_id.clone()).unwrap_or_default();
        if let Some(hook) = self.after_lookup.lock().unwrap().as_mut() {
            hook(&mut book, &client_order_id);
        }
        Ok(found)
    }

    async fn cancel(&self, _: &str, venue_order_id: &str) -> Result<(), VenueError> {
        let mut book = self.book.lock().unwrap();
        if let Some(order) = book.orders.iter_mut().find(|o| o.venue_order_id == venue_order_id) {
            order.status = OrderStatus::Canceled;
        }
        Ok(())
    }

    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        self.read_error()?;
        Ok(self.book.lock().unwrap().orders.iter().filter(|o| o.status.is_open()).cloned().collect())
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        self.read_error()?;
        Ok(self.book.lock().unwrap().positions.clone())
    }

    async fn account(&self) -> Result<VenueAccount, VenueError> {
        self.read_error()?;
        Ok(VenueAccount { cash: Decimal::from(1000), buying_power: Decimal::from(1000) })
    }
}

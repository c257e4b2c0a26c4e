//! Write a stratbox strategy in Rust.
//!
//! Implement [`Strategy`] for a type holding the strategy's state, and
//! export it with [`export_strategy!`]. The crate hides the WebAssembly
//! bindings of the `stratbox:strategy@0.2.0` contract: a strategy is only
//! its rules.
//!
//! ```ignore
//! use stratbox_sdk::*;
//!
//! struct Hold { bought: bool, next_id: u64 }
//!
//! impl Strategy for Hold {
//!     fn describe() -> Info {
//!         Info::new("hold", "0.1.0", "buys once and holds")
//!     }
//!     fn create(_: &Params) -> Result<Self, Error> {
//!         Ok(Hold { bought: false, next_id: 1 })
//!     }
//!     fn restore(_: &Params, state: &[u8]) -> Result<Self, Error> {
//!         match state {
//!             [b, rest @ ..] if rest.len() == 8 => Ok(Hold { bought: *b == 1, next_id: u64::from_le_bytes(rest.try_into().unwrap()) }),
//!             _ => Err(Error::IncompatibleState("expected 9 bytes".into())),
//!         }
//!     }
//!     fn on_bars(&mut self, bars: &Bars, out: &mut Vec<BarAction>) {
//!         if let (false, Some(bar)) = (self.bought, bars.iter().next()) {
//!             self.bought = true;
//!             out.push(bar.act(Action::Submit(Order::market(self.next_id, bar.symbol, Side::Buy, Decimal::from(1)))));
//!             self.next_id += 1;
//!         }
//!     }
//!     fn save_state(&self) -> Vec<u8> {
//!         let mut out = vec![self.bought as u8];
//!         out.extend_from_slice(&self.next_id.to_le_bytes());
//!         out
//!     }
//! }
//!
//! export_strategy!(Hold);
//! ```
//!
//! # What a strategy must keep to
//! The rules are in the contract's documentation (`wit/strategy.wit`): be
//! deterministic, pick a fresh order id for every order within an
//! instance's lifetime and keep the counter in the saved state, and expect
//! fills and rejections in later calls than the order.

use std::cell::RefCell;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "::stratbox_sdk::bindings",
    });
}

pub use bindings::exports::stratbox::strategy::strategy::{Guest, GuestInstance, Instance};
pub use bindings::stratbox::strategy::host;
pub use bindings::stratbox::strategy::types::{
    AccountView, Action, BarAction, Bars, Decimal, Error, Fill, Info, InvalidParam, Level, Notification, Order,
    OrderType, Param, ParamSpec, ParamValue, Rejection, Side, Signal, StopLimit, TimeInForce,
};

/// A trading strategy. One value of the implementing type is one instance;
/// a component may hold several.
pub trait Strategy: Sized + 'static {
    /// Name, version and parameters.
    fn describe() -> Info;

    /// Starts an instance; `params` has every declared parameter.
    fn create(params: &Params) -> Result<Self, Error>;

    /// Restores an instance from what [`Strategy::save_state`] returned,
    /// possibly by an older build.
    fn restore(params: &Params, state: &[u8]) -> Result<Self, Error>;

    /// A batch of bars in time order; push each action with the bar that
    /// caused it ([`Bar::act`]).
    fn on_bars(&mut self, bars: &Bars, out: &mut Vec<BarAction>);

    /// One of this instance's orders was (partly) filled.
    fn on_fill(&mut self, fill: &Fill) -> Vec<Action> {
        let _ = fill;
        Vec::new()
    }

    /// One of this instance's orders was refused or expired.
    fn on_reject(&mut self, rejection: &Rejection) -> Vec<Action> {
        let _ = rejection;
        Vec::new()
    }

    /// An external signal, such as a webhook payload.
    fn on_signal(&mut self, signal: &Signal) -> Vec<Action> {
        let _ = signal;
        Vec::new()
    }

    /// Everything the instance needs to carry on after a restart or a swap,
    /// including its next order id.
    fn save_state(&self) -> Vec<u8>;
}

/// The exported resource: a strategy instance behind the interior
/// mutability the bindings' `&self` methods need.
#[doc(hidden)]
pub struct Exported<S>(RefCell<S>);

impl<S: Strategy> GuestInstance for Exported<S> {
    fn create(params: Vec<Param>) -> Result<Instance, Error> {
        S::create(&Params(params)).map(|s| Instance::new(Exported(RefCell::new(s))))
    }

    fn restore(params: Vec<Param>, state: Vec<u8>) -> Result<Instance, Error> {
        S::restore(&Params(params), &state).map(|s| Instance::new(Exported(RefCell::new(s))))
    }

    fn on_bars(&self, bars: Bars) -> Vec<BarAction> {
        let mut out = Vec::new();
        self.0.borrow_mut().on_bars(&bars, &mut out);
        out
    }

    fn on_fill(&self, fill: Fill) -> Vec<Action> {
        self.0.borrow_mut().on_fill(&fill)
    }

    fn on_reject(&self, rejection: Rejection) -> Vec<Action> {
        self.0.borrow_mut().on_reject(&rejection)
    }

    fn on_signal(&self, signal: Signal) -> Vec<Action> {
        self.0.borrow_mut().on_signal(&signal)
    }

    fn save_state(&self) -> Vec<u8> {
        self.0.borrow().save_state()
    }
}

/// Exports a [`Strategy`] as the component's `strategy` interface.
#[macro_export]
macro_rules! export_strategy {
    ($strategy:ty) => {
        struct __StratboxExport;

        impl $crate::Guest for __StratboxExport {
            type Instance = $crate::Exported<$strategy>;

            fn describe() -> $crate::Info {
                <$strategy as $crate::Strategy>::describe()
            }
        }

        $crate::bindings::__export_plugin!(__StratboxExport);
    };
}

/// The parameters given to `create` or `restore`: every declared one,
/// checked by the host against its declared kind.
pub struct Params(Vec<Param>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&ParamValue> {
        self.0.iter().find(|p| p.key == key).map(|p| &p.value)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        kind: &str,
        pick: impl FnOnce(&'a ParamValue) -> Option<T>,
    ) -> Result<T, Error> {
        self.get(key).and_then(pick).ok_or_else(|| Error::invalid_param(key, format!("expected {kind}")))
    }

    pub fn integer(&self, key: &str) -> Result<i64, Error> {
        self.typed(key, "an integer", |v| match v {
            ParamValue::Integer(n) => Some(*n),
            _ => None,
        })
    }

    pub fn decimal(&self, key: &str) -> Result<Decimal, Error> {
        self.typed(key, "a decimal", |v| match v {
            ParamValue::Decimal(d) => Some(*d),
            _ => None,
        })
    }

    pub fn text(&self, key: &str) -> Result<&str, Error> {
        self.typed(key, "text", |v| match v {
            ParamValue::Text(t) => Some(t.as_str()),
            _ => None,
        })
    }

    pub fn boolean(&self, key: &str) -> Result<bool, Error> {
        self.typed(key, "a boolean", |v| match v {
            ParamValue::Boolean(b) => Some(*b),
            _ => None,
        })
    }
}

impl Error {
    pub fn invalid_param(key: &str, message: impl Into<String>) -> Self {
        Error::InvalidParam(InvalidParam { key: key.into(), message: message.into() })
    }
}

impl Decimal {
    pub const fn new(mantissa: i64, scale: u8) -> Self {
        Decimal { mantissa, scale }
    }
}

impl From<i64> for Decimal {
    fn from(n: i64) -> Self {
        Decimal { mantissa: n, scale: 0 }
    }
}

impl Info {
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Info { name: name.into(), version: version.into(), description: description.into(), params: Vec::new() }
    }

    /// Declares a parameter; its kind is its default's.
    pub fn param(mut self, key: &str, default: ParamValue, description: &str) -> Self {
        self.params.push(ParamSpec { key: key.into(), default, description: description.into() });
        self
    }
}

impl Order {
    /// A good-till-canceled market order.
    pub fn market(id: u64, symbol: &str, side: Side, qty: Decimal) -> Self {
        Order { id, symbol: symbol.into(), side, qty, order_type: OrderType::Market, time_in_force: TimeInForce::Gtc }
    }

    /// The same order, priced by `order_type`.
    pub fn priced(mut self, order_type: OrderType) -> Self {
        self.order_type = order_type;
        self
    }

    pub fn time_in_force(mut self, time_in_force: TimeInForce) -> Self {
        self.time_in_force = time_in_force;
        self
    }
}

impl Action {
    pub fn notify(level: Level, message: impl Into<String>) -> Self {
        Action::Notify(Notification { level, message: message.into() })
    }
}

/// One bar of a batch, read from its columns.
#[derive(Debug, Clone, Copy)]
pub struct Bar<'a> {
    /// Its index in the batch, which its actions carry.
    pub index: u32,
    pub symbol: &'a str,
    pub time: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

impl Bar<'_> {
    /// `action`, tagged with this bar.
    pub fn act(&self, action: Action) -> BarAction {
        BarAction { bar: self.index, action }
    }
}

impl Bars {
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// Bar `i` of the batch, if there is one and its columns agree.
    pub fn get(&self, i: usize) -> Option<Bar<'_>> {
        let s = usize::from(*self.symbol.get(i)?);
        let (price, volume) = (*self.price_scale.get(s)?, *self.volume_scale.get(s)?);
        let at = |column: &[i64], scale| column.get(i).map(|&m| Decimal { mantissa: m, scale });
        Some(Bar {
            index: u32::try_from(i).ok()?,
            symbol: self.symbols.get(s)?,
            time: *self.time.get(i)?,
            open: at(&self.open, price)?,
            high: at(&self.high, price)?,
            low: at(&self.low, price)?,
            close: at(&self.close, price)?,
            volume: at(&self.volume, volume)?,
        })
    }

    /// The bars in batch order.
    pub fn iter(&self) -> impl Iterator<Item = Bar<'_>> {
        (0..self.len()).map_while(|i| self.get(i))
    }
}

//! The one `bindgen!` of the contract, generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

pub use exports::stratbox::strategy::strategy as guest;
pub use stratbox::strategy::host;
pub use stratbox::strategy::types;

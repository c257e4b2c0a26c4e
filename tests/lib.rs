//! Shared helpers for the integration tests: where the freshly built guest
//! plugins are, the bundled data, and components made from WIT for the
//! malformed-plugin cases.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use stratbox::cli::{Cli, CliError};

pub mod browser;
pub mod fake;
pub mod hostile;
pub mod output;
pub mod process;
pub mod python;
pub mod smtp;

/// The SMA crossover plugin, built by this crate's build script.
pub const SMA_CROSSOVER_WASM: &str = env!("GUEST_SMA_CROSSOVER");
/// The test plugin that loops, traps or hogs memory on request.
pub const MISBEHAVE_WASM: &str = env!("GUEST_MISBEHAVE");

/// How long a test waits for something that should happen, and the call
/// deadline for strategies whose calls should succeed: far more than any
/// machine needs, however slow or busy, so that only a hang reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A file in the repository's `data/` folder.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data").join(name)
}

/// Runs the command line in-process and returns its result and stdout.
pub fn cli(args: &[&str]) -> (Result<ExitCode, CliError>, String) {
    use clap::Parser as _;
    let argv = std::iter::once("stratbox").chain(args.iter().copied());
    let parsed = match Cli::try_parse_from(argv) {
        Ok(parsed) => parsed,
        Err(e) => panic!("arguments {args:?} do not parse: {e}"),
    };
    let mut out = Vec::new();
    let result = stratbox::cli::run(parsed, &mut out);
    (result, String::from_utf8_lossy(&out).into_owned())
}

/// Encodes a component whose functions all trap, for a world written in WIT.
///
/// Lets tests build plugins of any shape (other contract versions, extra
/// imports) without a guest crate for each.
pub fn component_from_wit(wit: &str, world: &str) -> anyhow::Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("test.wit", wit)?;
    let world = resolve.select_world(&[package], Some(world))?;
    let mut module = wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)?;
    wit_component::ComponentEncoder::default().module(&module)?.validate(true).encode()
}

/// The contract's WIT text with its version replaced.
pub fn contract_wit(version: &str) -> String {
    let text = include_str!("../wit/strategy.wit");
    text.replace("stratbox:strategy@0.2.0", &format!("stratbox:strategy@{version}"))
}

/// The contract as it was at 0.1.0, before strategies became resources.
pub fn contract_wit_0_1() -> &'static str {
    include_str!("test_data/strategy-0.1.wit")
}

/// `wasm` with a custom section appended: a different build (another
/// SHA-256) that behaves the same, for hot-swap tests.
pub fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// The misbehave plugin as another build of the same code, marked `mark`
/// (at most 17 bytes; `trap@N` traps on the N-th bar after it is loaded).
/// Its data, not its code, differs, so the component stays valid.
pub fn misbehave_build(mark: &str) -> Vec<u8> {
    const PREFIX: &[u8] = b"stratbox-build:";
    let mut wasm = std::fs::read(MISBEHAVE_WASM).expect("the misbehave plugin is built");
    assert!(mark.len() <= 17, "a build mark has 17 bytes");
    let at = wasm.windows(PREFIX.len()).position(|w| w == PREFIX).expect("the plugin has a build mark");
    assert!(!wasm[at + 1..].windows(PREFIX.len()).any(|w| w == PREFIX), "the build mark appears once in the plugin");
    let field = &mut wasm[at + PREFIX.len()..at + PREFIX.len() + 17];
    field.fill(b'_');
    field[..mark.len()].copy_from_slice(mark.as_bytes());
    wasm
}

/// A day market buy of `qty` AAPL, the order most venue tests route.
pub fn market_buy(qty: i64) -> stratbox::order::OrderIntent {
    use stratbox::order::{OrderIntent, Side, TimeInForce};
    OrderIntent { time_in_force: TimeInForce::Day, ..OrderIntent::market("AAPL".into(), Side::Buy, qty.into()) }
}

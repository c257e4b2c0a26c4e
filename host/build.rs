//! Builds the bundled strategy plugins so the binary can embed them.

include!("../plugins/guests.rs");

fn main() {
    let [sma] = build_guests(&["sma-crossover"]).try_into().expect("one path per guest");
    println!("cargo:rustc-env=STRATBOX_SMA_CROSSOVER_WASM={}", sma.display());
}

//! Builds every guest plugin and tells the tests where they are.

include!("../plugins/guests.rs");

fn main() {
    let names = ["sma-crossover", "misbehave"];
    for (name, path) in names.iter().zip(build_guests(&names)) {
        let var = format!("GUEST_{}", name.to_uppercase().replace('-', "_"));
        println!("cargo:rustc-env={var}={}", path.display());
    }
}

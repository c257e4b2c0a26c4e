//! Builds every guest plugin and tells the tests where they are.

include!("../plugins/guests.rs");

fn main() {
    let names = ["sma-crossover", "misbehave"];
    for (name, path) in names.iter().zip(build_guests(&names)) {
        let var = format!("GUEST_{}", name.to_uppercase().replace('-', "_"));
        println!("cargo:rustc-env={var}={}", path.display());
    }
    // <target>/<profile>/build/<crate>/out → <target>/python: where the
    // tests install packages from PyPI (aiosmtpd, componentize-py) and keep
    // the Python guests they build.
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = out_dir.ancestors().nth(4).unwrap_or(&out_dir);
    println!("cargo:rustc-env=STRATBOX_TEST_PYTHON={}", target.join("python").display());
}

// Builds guest plugins for `wasm32-wasip2`; shared by the build scripts of
// `host` (which embeds the bundled plugins) and `tests` (which runs them all)
// through `include!`.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";
const GUEST_RUSTFLAGS: &str = "-Clink-arg=-zstack-size=65536";

/// Compiles the named guest crates and returns the path of each `.wasm`.
fn build_guests(names: &[&str]) -> Vec<PathBuf> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("crate lives in the workspace").to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // <target>/<profile>/build/<crate>/out → <target>/guests-<checkout>, shared
    // by every build script of this checkout. Keyed by the checkout, so two
    // work trees sharing one target directory never overwrite each other's
    // guests.
    let checkout = root.to_string_lossy().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let target_dir = out_dir.ancestors().nth(4).unwrap_or(&out_dir).join(format!("guests-{:08x}", checkout >> 32));

    // Every guest is built on the SDK.
    for watched in ["wit", "Cargo.lock", "plugins/guests.rs", "plugins/sdk-rust"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for name in names {
        println!("cargo:rerun-if-changed={}", root.join("plugins").join(name).display());
    }

    ensure_target();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", GUEST_TARGET, "--target-dir"])
        .arg(&target_dir);
    for name in names {
        cmd.args(["--package", name]);
    }
    // Guests are small: whole-program optimisation is cheap and makes every
    // call into them faster.
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "true").env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    // A 64 KiB stack instead of 1 MiB: the stack, the data and the first
    // heap pages then share the start of linear memory, which the host keeps
    // resident between instances, so instantiating touches no fresh page.
    cmd.env("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", GUEST_RUSTFLAGS);
    // Flags meant for the host build (coverage, clippy, sanitizers) must not
    // leak into the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to start cargo to build the guest plugins");
    assert!(status.success(), "building the guest plugins failed: {status}");

    names
        .iter()
        .map(|name| {
            let file = format!("{}.wasm", name.replace('-', "_"));
            let path = target_dir.join(GUEST_TARGET).join("release").join(file);
            assert!(path.is_file(), "guest build produced no {}", path.display());
            path
        })
        .collect()
}

/// Installs the guest target through rustup when the toolchain lacks it.
fn ensure_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if libdir.as_deref().is_some_and(Path::is_dir) {
        return;
    }
    println!("cargo:warning=installing the {GUEST_TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .status()
        .expect("the wasm32-wasip2 target is missing and rustup could not be started");
    assert!(status.success(), "`rustup target add {GUEST_TARGET}` failed: {status}");
}

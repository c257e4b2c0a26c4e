//! A real browser for the tests: Debian's `chromium`, installed with
//! apt-get when it is missing, as the email tests install aiosmtpd.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, bail};

/// Tests in one process take turns at installing.
static TURN: Mutex<()> = Mutex::new(());

/// The names Chromium goes by on `PATH`.
const NAMES: &[&str] = &["chromium", "chromium-browser"];

fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| NAMES.iter().map(move |name| dir.join(name))).find(|p| p.is_file())
}

/// The Chromium to drive (`STRATBOX_CHROMIUM`, else one on `PATH`),
/// installed with `apt-get install chromium` when there is none.
pub fn chromium() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("STRATBOX_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = on_path() {
        return Ok(found);
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "--yes", "--quiet", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get to install chromium (the browser test needs Debian's chromium)")
    };
    if !install()?.success() {
        // The package lists may be missing or stale on a fresh machine.
        let updated = Command::new("apt-get").args(["update", "--quiet"]).status().context("running apt-get update")?;
        if !updated.success() || !install()?.success() {
            bail!("apt-get could not install chromium");
        }
    }
    on_path().context("chromium was installed but is not on PATH")
}

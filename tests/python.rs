//! Python for the tests: packages from PyPI, installed with pip into the
//! target directory on first use.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, bail};

/// Tests in one process take turns at installing.
static TURN: Mutex<()> = Mutex::new(());

/// The folder holding `requirement` (a pinned `name==version`), installed
/// there with pip when missing: put it on `PYTHONPATH`; console scripts are
/// in its `bin/`.
///
/// Each requirement has its own folder under the target directory.
/// Concurrent processes each install into a folder of their own and the
/// first to finish renames it into place.
pub fn pip_install(requirement: &str) -> anyhow::Result<PathBuf> {
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    install(requirement)
}

fn install(requirement: &str) -> anyhow::Result<PathBuf> {
    let folder: String =
        requirement.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    let dir = PathBuf::from(env!("STRATBOX_TEST_PYTHON")).join(folder);
    let marker = dir.join(".installed");
    if marker.is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(dir.parent().context("the install folder has a parent")?)?;
    let staging = dir.with_extension(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--root-user-action=ignore",
            "--target",
        ])
        .arg(&staging)
        .arg(requirement)
        .status()
        .with_context(|| {
            format!("running python3 -m pip to install {requirement} (the tests need Python 3 with pip)")
        })?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        bail!("pip could not install {requirement}: {status}");
    }
    std::fs::write(staging.join(".installed"), b"")?;
    if !marker.is_file() {
        // Whatever is there is an unfinished install.
        let _ = std::fs::remove_dir_all(&dir);
    }
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    if !marker.is_file() {
        bail!("{requirement} did not end up in {}", dir.display());
    }
    Ok(dir)
}

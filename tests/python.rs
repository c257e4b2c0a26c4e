//! Python for the tests: packages from PyPI, installed with pip into the
//! target directory on first use, and guest plugins written in Python, built
//! into components with componentize-py.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// The componentize-py release the Python guests are built with. It bundles
/// CPython and targets WASI 0.2; `--stub-wasi` (see [`build_guest`]) leaves
/// the component importing only the contract.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The flags every Python guest is built with: WASI imports become trapping
/// stubs, so the component imports nothing but the contract and cannot read
/// a clock or randomness, as the contract asks.
const COMPONENTIZE_FLAGS: &[&str] = &["--stub-wasi"];

/// Tests in one process take turns at installing and building.
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

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the workspace").to_path_buf()
}

/// Builds the Python guest in `plugins/<name>` (its `app.py` and the modules
/// beside it) against `wit/` and returns the component's path.
///
/// The component is cached in the target directory under a hash of the
/// Python sources, the WIT, the componentize-py release and its flags, so a
/// later run builds only after one of them changed.
pub fn build_guest(name: &str) -> anyhow::Result<PathBuf> {
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let source = root().join("plugins").join(name);
    let wit = root().join("wit");
    let sources = python_files(&source)?;
    let mut hash = Sha256::new();
    hash.update(COMPONENTIZE_PY.as_bytes());
    for flag in COMPONENTIZE_FLAGS {
        hash.update(flag.as_bytes());
    }
    for file in sources.iter().chain(&wit_files(&wit)?) {
        let relative = file.strip_prefix(root()).unwrap_or(file);
        hash.update(relative.to_string_lossy().as_bytes());
        hash.update([0]);
        let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(&text);
    }
    let digest: String = hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
    let out_dir = PathBuf::from(env!("STRATBOX_TEST_PYTHON")).join("guests");
    let wasm = out_dir.join(format!("{}-{digest}.wasm", name.replace('-', "_")));
    if wasm.is_file() {
        return Ok(wasm);
    }

    let tool = install(COMPONENTIZE_PY)?;
    std::fs::create_dir_all(&out_dir)?;
    // Build from a copy of the sources: componentize-py leaves __pycache__
    // behind, and only the files hashed above may go in.
    let work = tempfile::tempdir()?;
    for file in &sources {
        std::fs::copy(file, work.path().join(file.file_name().context("a source file has a name")?))?;
    }
    let staging = out_dir.join(format!("{name}.{}.tmp", std::process::id()));
    let started = Instant::now();
    let output = Command::new("python3")
        .arg(tool.join("bin").join("componentize-py"))
        .arg("--wit-path")
        .arg(&wit)
        .args(["--world", "plugin", "componentize"])
        .args(COMPONENTIZE_FLAGS)
        .arg("app")
        .arg("--output")
        .arg(&staging)
        .current_dir(work.path())
        .env("PYTHONPATH", &tool)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .context("running componentize-py")?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&staging);
        bail!(
            "componentize-py could not build {name}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let size = std::fs::metadata(&staging)?.len();
    eprintln!("built {name} with {COMPONENTIZE_PY} in {:.1} s: {size} bytes", started.elapsed().as_secs_f64());
    std::fs::rename(&staging, &wasm)?;
    // Older builds of this guest are stale for good: 18 MB each.
    let prefix = format!("{}-", name.replace('-', "_"));
    for entry in std::fs::read_dir(&out_dir)?.flatten() {
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        if path != wasm && file.starts_with(&prefix) && file.ends_with(".wasm") {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(wasm)
}

/// The guest's Python modules, by name; its tests (`test_*.py`) stay out.
fn python_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".py") && !name.starts_with("test_") {
            files.push(path);
        }
    }
    files.sort();
    if !files.iter().any(|f| f.ends_with("app.py")) {
        bail!("{} has no app.py", dir.display());
    }
    Ok(files)
}

/// Every file under `wit/`, sorted.
fn wit_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

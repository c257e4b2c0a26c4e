//! `stratbox new`: writes a strategy project that builds into a working
//! plugin with one command.
//!
//! A Rust project vendors the Rust SDK and the contract, so it builds
//! wherever it is copied; a Python project carries the contract for
//! `componentize-py`.

use std::path::{Path, PathBuf};

/// The language of a new strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("`{name}` is not a usable name: use lowercase letters, digits and `-`, starting with a letter")]
    BadName { name: String },
    #[error("{path} already exists; choose another name or remove it")]
    Exists { path: PathBuf },
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: std::io::Error },
}

const WIT: &str = include_str!("../../wit/strategy.wit");
const SDK: &str = include_str!("../../plugins/sdk-rust/src/lib.rs");

/// The files of a new project, relative to its folder.
fn files(name: &str, lang: Lang) -> Vec<(&'static str, String)> {
    let fill = |template: &str| template.replace("{{name}}", name).replace("{{file}}", &name.replace('-', "_"));
    match lang {
        Lang::Rust => vec![
            ("Cargo.toml", fill(include_str!("scaffold/rust_Cargo.toml"))),
            ("src/lib.rs", fill(include_str!("scaffold/rust_lib.rs"))),
            ("README.md", fill(include_str!("scaffold/rust_README.md"))),
            (".gitignore", "/target\n".into()),
            (".cargo/config.toml", include_str!("scaffold/rust_cargo_config.toml").into()),
            ("sdk/Cargo.toml", include_str!("scaffold/sdk_Cargo.toml").into()),
            // The SDK reads the contract beside it, not the repository's.
            ("sdk/src/lib.rs", SDK.replace("\"../../wit\"", "\"wit\"")),
            ("sdk/wit/strategy.wit", WIT.into()),
        ],
        Lang::Python => vec![
            ("app.py", fill(include_str!("scaffold/python_app.py"))),
            ("strategy.py", fill(include_str!("scaffold/python_strategy.py"))),
            ("README.md", fill(include_str!("scaffold/python_README.md"))),
            (".gitignore", "/wit_world/\n/componentize_py_*\n*.wasm\n__pycache__/\n".into()),
            ("wit/strategy.wit", WIT.into()),
        ],
    }
}

/// Writes the project `name` into `parent/name` and returns its folder.
/// Nothing is written if the folder exists.
pub fn create(parent: &Path, name: &str, lang: Lang) -> Result<PathBuf, ScaffoldError> {
    let usable = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !usable {
        return Err(ScaffoldError::BadName { name: name.chars().take(64).collect() });
    }
    let root = parent.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists { path: root });
    }
    for (file, text) in files(name, lang) {
        let path = root.join(file);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, text)
        };
        write(&path).map_err(|source| ScaffoldError::Write { path: path.clone(), source })?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_self_contained_rust_project_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = create(dir.path(), "my-strat", Lang::Rust).unwrap();
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(lib.contains("Info::new(\"my-strat\"") && !lib.contains("{{"), "{lib}");
        let sdk = std::fs::read_to_string(root.join("sdk/src/lib.rs")).unwrap();
        assert!(sdk.contains("path: \"wit\"") && !sdk.contains("../../wit"));
        assert!(std::fs::read_to_string(root.join("sdk/wit/strategy.wit")).unwrap().contains("@0.2.0"));
        assert!(std::fs::read_to_string(root.join("README.md")).unwrap().contains("release/my_strat.wasm"));
        assert!(matches!(create(dir.path(), "my-strat", Lang::Rust), Err(ScaffoldError::Exists { .. })));
    }

    #[test]
    fn refuses_names_that_are_not_crate_names() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "My", "1x", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(matches!(create(dir.path(), bad, Lang::Rust), Err(ScaffoldError::BadName { .. })), "{bad}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
    }
}

//! Checks that a component speaks this host's contract and asks for nothing else.

use serde::Serialize;
use sha2::Digest as _;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::{PluginInfo, Runtime, RuntimeError};

/// The contract version this host implements.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// What a plugin built for an older contract must change, in one line.
const UPGRADE_HINT: &str = "0.2 is needed: a strategy is now an `instance` resource made by `create` (typed \
    parameters) or `restore` (saved state), bars arrive in columns, and `submit` carries the order's own id; \
    rebuild it against this host's wit/ (the Rust SDK and `stratbox new` do this for you)";
const PACKAGE: &str = "stratbox:strategy";

/// Interfaces a plugin may import (any 0.2.x version for WASI).
const ALLOWED_IMPORTS: &[&str] = &[
    "stratbox:strategy/types",
    "stratbox:strategy/host",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// Refuses bytes that are not a component before compiling anything.
pub(super) fn check_preamble(label: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
    let reason = if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        "the file does not start with the WebAssembly header"
    } else if bytes[4..8] == [1, 0, 0, 0] {
        "it is a core WebAssembly module; build the plugin for wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    } else {
        return Ok(());
    };
    Err(RuntimeError::NotAComponent { plugin: label.into(), reason: reason.into() })
}

/// Splits `ns:pkg/iface@1.2.3` into the name and the version.
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (name, None),
    }
}

/// What to tell the author of a plugin built for contract `version`.
fn hint(version: Option<&str>) -> &'static str {
    match version {
        Some(v) if v.starts_with("0.1.") => UPGRADE_HINT,
        _ => "build it against the contract in this host's wit/",
    }
}

/// Same major version, and the same minor while the major is 0.
fn compatible(version: Option<&str>) -> bool {
    let parts = |v: &str| v.split('.').map(str::to_owned).collect::<Vec<_>>();
    let (Some(found), want) = (version.map(parts), parts(CONTRACT_VERSION)) else {
        return false;
    };
    found.len() == 3 && found[0] == want[0] && (want[0] != "0" || found[1] == want[1])
}

fn names(component: &Component, engine: &Engine) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    (imports, exports)
}

pub(super) fn check_component(label: &str, engine: &Engine, component: &Component) -> Result<(), RuntimeError> {
    let (imports, exports) = names(component, engine);
    check_names(label, &imports, &exports)
}

fn check_names(label: &str, imports: &[String], exports: &[String]) -> Result<(), RuntimeError> {
    let strategy = format!("{PACKAGE}/strategy");
    let exported = exports.iter().map(|e| split_version(e)).find(|(n, _)| *n == strategy);
    match exported {
        Some((_, version)) if compatible(version) => {}
        Some((_, version)) => {
            return Err(RuntimeError::WrongVersion {
                plugin: label.into(),
                found: format!("{PACKAGE}@{}", version.unwrap_or("(unversioned)")),
                expected: CONTRACT_VERSION,
                hint: hint(version),
            });
        }
        None => {
            return Err(RuntimeError::MissingExport {
                plugin: label.into(),
                exports: if exports.is_empty() { "nothing".into() } else { exports.join(", ") },
                expected: CONTRACT_VERSION,
            });
        }
    }
    for import in imports {
        let (name, version) = split_version(import);
        if name.starts_with(PACKAGE) && ALLOWED_IMPORTS.contains(&name) && !compatible(version) {
            return Err(RuntimeError::WrongVersion {
                plugin: label.into(),
                found: format!("{PACKAGE}@{}", version.unwrap_or("(unversioned)")),
                expected: CONTRACT_VERSION,
                hint: hint(version),
            });
        }
        let wasi_ok = name.starts_with("wasi:") && version.is_some_and(|v| v.starts_with("0.2."));
        if !ALLOWED_IMPORTS.contains(&name) || !(name.starts_with(PACKAGE) || wasi_ok) {
            return Err(RuntimeError::ForbiddenImport { plugin: label.into(), import: import.clone() });
        }
    }
    Ok(())
}

/// What `stratbox plugin inspect` reports about a component.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub path: String,
    /// SHA-256 of the component's bytes, in hex: what a strategy's `sha256`
    /// pin names.
    pub sha256: String,
    /// `package@version` of the strategy interface it exports, if any.
    pub contract: Option<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Whether the host can run it, and why not.
    pub satisfies_contract: bool,
    pub problem: Option<String>,
    /// What the plugin says about itself, when it could be started.
    pub info: Option<PluginInfo>,
}

/// Inspects a component; fails only if the bytes are not a component at all.
pub fn inspect(runtime: &Runtime, label: &str, bytes: &[u8]) -> Result<Inspection, RuntimeError> {
    // Compiled once: for its names, then for the contract check.
    let component = runtime.compile(label, bytes)?;
    let (imports, exports) = names(&component, &runtime.engine);
    let contract = exports
        .iter()
        .map(|e| split_version(e))
        .find(|(n, _)| n.starts_with(PACKAGE))
        .map(|(n, v)| format!("{}@{}", n.split('/').next().unwrap_or(n), v.unwrap_or("(unversioned)")));
    let verdict = runtime.prepare(label, bytes, &component);
    let (problem, info) = match verdict {
        Ok(plugin) => (None, Some(plugin.info.clone())),
        Err(e) => (Some(e.to_string()), None),
    };
    Ok(Inspection {
        path: label.into(),
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
        contract,
        imports,
        exports,
        satisfies_contract: problem.is_none(),
        problem,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accepts_the_contract_and_std_wasi() {
        let imports = owned(&["stratbox:strategy/types@0.2.0", "wasi:cli/stderr@0.2.6", "wasi:io/streams@0.2.0"]);
        assert!(check_names("p", &imports, &owned(&["stratbox:strategy/strategy@0.2.0"])).is_ok());
        assert!(check_names("p", &[], &owned(&["stratbox:strategy/strategy@0.2.3"])).is_ok());
    }

    #[test]
    fn refuses_other_versions_missing_exports_and_extra_imports() {
        let exports = owned(&["stratbox:strategy/strategy@0.2.0"]);
        let wrong = check_names("p", &[], &owned(&["stratbox:strategy/strategy@0.3.0"])).unwrap_err();
        assert!(matches!(wrong, RuntimeError::WrongVersion { .. }), "{wrong}");
        // A 0.1 plugin is told what changed.
        let old = check_names("p", &[], &owned(&["stratbox:strategy/strategy@0.1.0"])).unwrap_err().to_string();
        assert!(old.contains("0.2 is needed") && old.contains("`instance` resource"), "{old}");
        let wrong_import = check_names("p", &owned(&["stratbox:strategy/host@1.0.0"]), &exports).unwrap_err();
        assert!(matches!(wrong_import, RuntimeError::WrongVersion { .. }), "{wrong_import}");
        let missing = check_names("p", &[], &owned(&["wasi:cli/run@0.2.0"])).unwrap_err();
        assert!(matches!(missing, RuntimeError::MissingExport { .. }), "{missing}");
        for bad in
            ["wasi:sockets/tcp@0.2.0", "wasi:http/outgoing-handler@0.2.0", "evil:fs/read", "wasi:cli/stdout@0.3.0"]
        {
            let err = check_names("p", &owned(&[bad]), &exports).unwrap_err();
            assert!(matches!(err, RuntimeError::ForbiddenImport { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn refuses_non_components_early() {
        assert!(check_preamble("p", b"").is_err());
        assert!(check_preamble("p", b"not wasm at all").is_err());
        let core = check_preamble("p", b"\0asm\x01\0\0\0").unwrap_err();
        assert!(core.to_string().contains("core WebAssembly module"), "{core}");
        assert!(check_preamble("p", b"\0asm\x0d\0\x01\0").is_ok());
    }
}

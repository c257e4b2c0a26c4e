//! Compiled plugins kept on disk, so a restart or a repeated swap of the
//! same build skips compilation.
//!
//! An artifact is keyed by the SHA-256 of its `.wasm` and by the engine's
//! compatibility hash (wasmtime's version and compilation settings), so one
//! written by another build of the host is never read. Loading an artifact
//! runs its machine code, which is why `Component::deserialize` is unsafe:
//! only artifacts this host wrote may be loaded. Each file therefore carries
//! an HMAC-SHA256 tag under a key that only this host's data folder holds
//! (created owner-only), checked in constant time before anything is
//! deserialized. A file that fails the check is deleted and the plugin
//! compiled afresh; a cache that cannot be opened or written only costs
//! time.

use std::hash::Hasher;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Bytes of the key and of each file's tag.
const KEY_BYTES: usize = 32;

/// The largest artifact read back (a componentize-py build compiles to
/// about 60 MB).
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// Why the cache could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot use {path} for compiled plugins")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not a key this host wrote ({len} bytes)")]
    BadKey { path: String, len: usize },
    #[error("no randomness for the cache key")]
    Random(#[source] getrandom::Error),
}

/// A folder of compiled plugins, each tagged with this host's key.
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; KEY_BYTES],
    /// The engine's compatibility hash, in hex.
    engine: String,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache").field("dir", &self.dir).field("engine", &self.engine).finish()
    }
}

/// Feeds `std::hash::Hash` output into SHA-256: wasmtime's compatibility
/// hash is only a `Hash`, and the default hasher is not stable.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ArtifactCache {
    /// Opens `dir` (created owner-only if missing) and its key (created on
    /// first use) for `engine`'s artifacts.
    pub fn open(dir: &Path, engine: &wasmtime::Engine) -> Result<Self, CacheError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| CacheError::Io { path, source }
        };
        create_private_dir(dir).map_err(io(dir))?;
        let key_path = dir.join("key");
        let key = match std::fs::read(&key_path) {
            Ok(key) => key
                .try_into()
                .map_err(|key: Vec<u8>| CacheError::BadKey { path: key_path.display().to_string(), len: key.len() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_BYTES];
                getrandom::getrandom(&mut key).map_err(CacheError::Random)?;
                write_private(&key_path, &key).map_err(io(&key_path))?;
                key
            }
            Err(source) => return Err(CacheError::Io { path: key_path.display().to_string(), source }),
        };
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine = hex::encode(&hasher.0.finalize()[..8]);
        Ok(Self { dir: dir.to_path_buf(), key, engine })
    }

    fn path_of(&self, wasm_sha256: &str) -> PathBuf {
        self.dir.join(format!("{wasm_sha256}-{}.cwasm", self.engine))
    }

    fn tag(&self, wasm_sha256: &str, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(wasm_sha256.as_bytes());
        mac.update(b"\n");
        mac.update(self.engine.as_bytes());
        mac.update(b"\n");
        mac.update(artifact);
        mac
    }

    /// The artifact compiled from the `.wasm` whose SHA-256 is
    /// `wasm_sha256`, if this host wrote one and it is intact.
    pub fn get(&self, wasm_sha256: &str) -> Option<Vec<u8>> {
        let path = self.path_of(wasm_sha256);
        let size = std::fs::metadata(&path).ok()?.len();
        if size > MAX_ARTIFACT_BYTES {
            return None;
        }
        let mut file = std::fs::read(&path).ok()?;
        if file.len() < KEY_BYTES {
            return self.discard(&path);
        }
        let artifact = file.split_off(KEY_BYTES);
        match self.tag(wasm_sha256, &artifact).verify_slice(&file) {
            Ok(()) => Some(artifact),
            Err(_) => self.discard(&path),
        }
    }

    fn discard(&self, path: &Path) -> Option<Vec<u8>> {
        tracing::warn!(file = %path.display(), "a cached compiled plugin failed its check: deleted, compiling afresh");
        let _ = std::fs::remove_file(path);
        None
    }

    /// Keeps `artifact`, compiled from the `.wasm` whose SHA-256 is
    /// `wasm_sha256`: written aside, then renamed in whole.
    pub fn put(&self, wasm_sha256: &str, artifact: &[u8]) {
        let path = self.path_of(wasm_sha256);
        let aside = path.with_extension(format!("part-{}", std::process::id()));
        let tag = self.tag(wasm_sha256, artifact).finalize().into_bytes();
        let written =
            write_private(&aside, &[tag.as_slice(), artifact].concat()).and_then(|()| std::fs::rename(&aside, &path));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&aside);
            tracing::warn!(file = %path.display(), %error, "cannot keep a compiled plugin; it will be compiled again");
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> wasmtime::Engine {
        wasmtime::Engine::default()
    }

    #[test]
    fn an_artifact_comes_back_only_as_this_host_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(&dir.path().join("compiled"), &engine()).unwrap();
        assert_eq!(cache.get("aa"), None, "nothing yet");
        cache.put("aa", b"machine code");
        assert_eq!(cache.get("aa").as_deref(), Some(&b"machine code"[..]));
        assert_eq!(cache.get("bb"), None, "another build's key");

        // Reopened (a restart): the same key, so the same artifact.
        let again = ArtifactCache::open(&dir.path().join("compiled"), &engine()).unwrap();
        assert_eq!(again.get("aa").as_deref(), Some(&b"machine code"[..]));

        // Tampered with, or written by someone without the key: deleted.
        let path = cache.path_of("aa");
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.get("aa"), None);
        assert!(!path.exists(), "a bad file is deleted");
        std::fs::write(&path, [0u8; 8]).unwrap();
        assert_eq!(cache.get("aa"), None, "too short to hold a tag");

        // Another host's cache (another key) cannot vouch for this one's files.
        let other = ArtifactCache::open(&dir.path().join("other"), &engine()).unwrap();
        other.put("cc", b"forged");
        std::fs::copy(other.path_of("cc"), cache.path_of("cc")).unwrap();
        assert_eq!(cache.get("cc"), None);
    }

    #[cfg(unix)]
    #[test]
    fn the_folder_and_key_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(&dir.path().join("compiled"), &engine()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache.dir), 0o700);
        assert_eq!(mode(&cache.dir.join("key")), 0o600);
        assert!(matches!(
            ArtifactCache::open(&dir.path().join("compiled").join("key"), &engine()),
            Err(CacheError::Io { .. })
        ));
    }
}

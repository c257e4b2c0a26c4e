//! Where untrusted components are compiled: in a child process of the same
//! binary, with a wall-time limit and an address-space limit, so a crafted
//! component (a "compile bomb") costs a bounded, killable process, never the
//! host's time or memory.
//!
//! The child (`stratbox __compile`, hidden) reads the component from stdin,
//! compiles it with this host's engine settings and writes the SHA-256 of
//! the artifact and then the artifact to stdout. The parent checks the
//! digest and deserializes only what its own child produced.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use wasmtime::Engine;

use super::RuntimeError;

/// How a runtime compiles components that are not bundled.
#[derive(Debug, Clone, Default)]
pub enum Compiler {
    /// In this process: for tests and tools that run trusted components.
    #[default]
    InProcess,
    /// In a child process of `program` (this binary), within `limits`.
    Child { program: PathBuf, limits: CompileLimits },
}

/// Bounds on compiling one component in a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// Wall time before the child is killed.
    pub wall: Duration,
    /// The child's address space (`RLIMIT_AS`), in bytes.
    pub memory: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        // Generous for componentize-py's 18 MB components (several seconds,
        // under 1 GiB), far below what a crafted one can ask for.
        Self { wall: Duration::from_secs(60), memory: 3 << 30 }
    }
}

/// The hidden subcommand the child runs.
pub const CHILD_COMMAND: &str = "__compile";

/// The binary whose `__compile` compiles untrusted components, once the
/// program's entry point has said it is this one.
static PROGRAM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Called once by the `stratbox` binary's entry point: from then on every
/// runtime compiles untrusted components in a child of `program`. (Tests
/// that drive the library in-process compile in-process: their executable
/// is a test harness, not this binary.)
pub fn isolate_compilation(program: PathBuf) {
    let _ = PROGRAM.set(program);
}

impl Compiler {
    /// The child compiler if the entry point asked for one, else in-process.
    pub fn for_this_process(limits: CompileLimits) -> Self {
        match PROGRAM.get() {
            Some(program) => Compiler::Child { program: program.clone(), limits },
            None => Compiler::InProcess,
        }
    }
}

/// Compiles `bytes` in a child of `program` and returns the artifact.
pub(super) fn compile_in_child(
    label: &str,
    program: &std::path::Path,
    limits: CompileLimits,
    bytes: &[u8],
) -> Result<Vec<u8>, RuntimeError> {
    let failed = |reason: String| RuntimeError::Compile { plugin: label.into(), reason };
    let mut child = Command::new(program)
        .args([CHILD_COMMAND, "--memory-bytes", &limits.memory.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start the compiler process {}: {e}", program.display())))?;
    // Feed and drain on threads: either pipe may fill while the other waits.
    let mut stdin = child.stdin.take().ok_or_else(|| failed("no stdin to the compiler".into()))?;
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let mut stdout = child.stdout.take().ok_or_else(|| failed("no stdout from the compiler".into()))?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let mut stderr = child.stderr.take().ok_or_else(|| failed("no stderr from the compiler".into()))?;
    let complaint = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.by_ref().take(4096).read_to_string(&mut text);
        text
    });

    let deadline = Instant::now() + limits.wall;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("compiling took longer than {:?}, the limit", limits.wall)));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(failed(format!("cannot wait for the compiler process: {e}"))),
        }
    };
    let _ = feeder.join();
    let out = reader.join().ok().and_then(Result::ok).unwrap_or_default();
    let complaint = complaint.join().unwrap_or_default();
    if !status.success() {
        let why = super::convert::bounded(complaint.trim());
        let why = if why.is_empty() { "no message (out of memory?)".to_string() } else { why };
        let limit = limits.memory >> 20;
        return Err(failed(format!("the compiler process failed ({status}, memory limit {limit} MiB): {why}")));
    }
    let (digest, artifact) = out.split_at_checked(32).ok_or_else(|| failed("the compiler returned nothing".into()))?;
    if sha2::Sha256::digest(artifact).as_slice() != digest {
        return Err(failed("the compiled artifact does not match its digest".into()));
    }
    Ok(artifact.to_vec())
}

/// The child's side: limits its own address space, compiles stdin with
/// `engine` and writes the digest and the artifact to stdout.
pub fn serve(engine: &Engine, memory: u64) -> Result<(), String> {
    limit_address_space(memory)?;
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).map_err(|e| format!("cannot read the component: {e}"))?;
    let artifact = engine.precompile_component(&bytes).map_err(|e| format!("{e:#}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&sha2::Sha256::digest(&artifact))
        .and_then(|()| out.write_all(&artifact))
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the artifact: {e}"))
}

/// Lowers the compiling process's priority (nice 10), before any of its
/// threads start: a large plugin's compile then takes the cores the
/// running strategies leave, rather than competing with them for their
/// deadlines. Best effort: a compile at normal priority is only slower for
/// the others.
pub(super) fn yield_to_strategies() {
    #[cfg(unix)]
    if let Err(error) = rustix::process::nice(10) {
        eprintln!("the compiler could not lower its priority: {error}");
    }
}

#[cfg(unix)]
fn limit_address_space(bytes: u64) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(Resource::As, Rlimit { current: Some(bytes), maximum: Some(bytes) })
        .map_err(|e| format!("cannot limit the compiler's memory: {e}"))
}

#[cfg(not(unix))]
fn limit_address_space(_: u64) -> Result<(), String> {
    Ok(())
}

//! Untrusted components are compiled in a bounded child process: a crafted
//! component that would take the host's time or memory is refused, and
//! ordinary plugins run from the child's artifacts.

use std::time::{Duration, Instant};

use stratbox::runtime::{CompileLimits, Compiler, Runtime, RuntimeConfig, RuntimeError, ShapeError};
use stratbox_tests::{SMA_CROSSOVER_WASM, data};

/// A component whose one core function is `rounds` additions over
/// `locals` 64-bit locals: small to send, costly to compile.
fn compile_bomb(locals: u32, rounds: u32) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection, TypeSection, ValType,
    };
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I64]);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut body = Function::new([(locals, ValType::I64)]);
    // Additions with a branch after each: every local stays live across
    // thousands of blocks, which is what register allocation pays for.
    for r in 0..rounds {
        let (x, y, z) = (r % locals, (r * 7 + 3) % locals, (r * 13 + 5) % locals);
        body.instruction(&Instruction::LocalGet(x));
        body.instruction(&Instruction::LocalGet(y));
        body.instruction(&Instruction::I64Add);
        body.instruction(&Instruction::LocalTee(z));
        body.instruction(&Instruction::I32WrapI64);
        body.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
        body.instruction(&Instruction::LocalGet(y));
        body.instruction(&Instruction::LocalSet(x));
        body.instruction(&Instruction::End);
    }
    // Everything is used at the end.
    body.instruction(&Instruction::I64Const(0));
    for l in 0..locals {
        body.instruction(&Instruction::LocalGet(l));
        body.instruction(&Instruction::I64Add);
    }
    body.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&body);
    module.section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// The fills of `plugin` backtested on IBM.
fn ibm_fills(
    runtime: &Runtime,
    plugin: &std::sync::Arc<stratbox::runtime::Plugin>,
) -> Vec<stratbox::report::FillRecord> {
    let bars = stratbox::feed::load_csv(&data("IBM.csv"), "IBM", stratbox::feed::CsvLimits::default()).unwrap();
    let strategy = runtime.instantiate(plugin, &[], stratbox::runtime::Clock::virtual_at(0)).unwrap();
    let mut engine = stratbox::engine::Engine::new(
        Box::new(strategy),
        Box::new(stratbox::broker::PaperBroker::default()),
        stratbox::risk::RiskLimits::default(),
        rust_decimal::Decimal::from(100_000),
    );
    engine.run(&bars, 256).unwrap();
    engine.report("IBM").fills
}

fn isolated(limits: CompileLimits) -> Runtime {
    let program = env!("CARGO_BIN_EXE_stratbox-under-test").into();
    Runtime::new(RuntimeConfig {
        max_instances: 4,
        compiler: Compiler::Child { program, limits },
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_compile_bomb_is_stopped_at_the_time_limit() {
    let bomb = compile_bomb(2000, 20_000);
    assert!(bomb.len() < 500_000, "small to send: {} bytes", bomb.len());
    let runtime = isolated(CompileLimits { wall: Duration::from_secs(2), ..CompileLimits::default() });
    let start = Instant::now();
    let err = runtime.load("bomb", &bomb).err().expect("refused");
    assert!(start.elapsed() < Duration::from_secs(20), "the host regained control: {:?}", start.elapsed());
    assert!(matches!(&err, RuntimeError::Compile { reason, .. } if reason.contains("took longer than 2s")), "{err}");
}

/// Code no real strategy has is refused by a cheap pass over the binary,
/// before a compiler is started at all.
#[test]
fn code_of_an_absurd_shape_is_refused_before_compiling() {
    let runtime = isolated(CompileLimits::default());
    let start = Instant::now();
    let err = runtime.load("locals", &compile_bomb(100_000, 10)).err().expect("refused");
    assert!(
        matches!(&err, RuntimeError::Shape { shape: ShapeError::Locals { count: 100_000, limit: 20_000 }, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("100000 locals"), "{err}");
    let err = runtime.load("long", &compile_bomb(4, 500_000)).err().expect("refused");
    assert!(matches!(&err, RuntimeError::Shape { shape: ShapeError::FunctionBytes { .. }, .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "no compiler ran: {:?}", start.elapsed());
}

#[test]
fn a_compile_bomb_is_stopped_at_the_memory_limit() {
    let bomb = compile_bomb(2000, 20_000);
    let runtime = isolated(CompileLimits { wall: Duration::from_secs(120), memory: 64 << 20 });
    let err = runtime.load("bomb", &bomb).err().expect("refused");
    let text = err.to_string();
    assert!(matches!(&err, RuntimeError::Compile { .. }) && text.contains("memory limit 64 MiB"), "{text}");
    assert!(text.len() < 1200, "briefly: {text}");
}

/// Plugins compiled in the child run exactly as ones compiled in-process.
#[test]
fn plugins_compiled_in_the_child_trade_as_before() {
    let bytes = std::fs::read(SMA_CROSSOVER_WASM).unwrap();
    let run = |runtime: &Runtime| ibm_fills(runtime, &runtime.load("sma", &bytes).unwrap());
    let in_process = Runtime::new(RuntimeConfig { max_instances: 4, ..Default::default() }).unwrap();
    let fills = run(&isolated(CompileLimits::default()));
    assert!(fills.len() > 100);
    assert_eq!(fills, run(&in_process));
}

/// A build compiled once is kept in the host's cache: a second runtime (a
/// restart) loads it without any compiler at all, and it trades the same;
/// a cached file that fails its check is never loaded.
#[test]
fn a_compiled_build_is_kept_and_only_an_intact_one_is_loaded() {
    let bytes = std::fs::read(SMA_CROSSOVER_WASM).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let with_compiler = |program: std::path::PathBuf| {
        Runtime::new(RuntimeConfig {
            max_instances: 4,
            compiler: Compiler::Child { program, limits: CompileLimits::default() },
            compile_cache: Some(cache.clone()),
            ..Default::default()
        })
        .unwrap()
    };
    let first = with_compiler(env!("CARGO_BIN_EXE_stratbox-under-test").into());
    let compiled = first.load("sma", &bytes).unwrap();
    let kept: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(kept.len(), 1, "one artifact: {kept:?}");
    assert!(kept[0].file_name().unwrap().to_string_lossy().starts_with(&compiled.sha256));

    // No compiler to run: only the cache can provide it.
    let restarted = with_compiler("/nonexistent/stratbox".into());
    let cached = restarted.load("sma", &bytes).unwrap();
    assert_eq!(cached.sha256, compiled.sha256);
    assert_eq!(ibm_fills(&restarted, &cached), ibm_fills(&first, &compiled), "the cached build trades the same");

    // One flipped byte: refused, deleted, and (with no compiler) not loaded.
    let mut tampered = std::fs::read(&kept[0]).unwrap();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x40;
    std::fs::write(&kept[0], &tampered).unwrap();
    let after_tampering = with_compiler("/nonexistent/stratbox".into());
    assert!(after_tampering.load("sma", &bytes).is_err(), "a tampered artifact is never deserialized");
    assert!(!kept[0].exists(), "and it is deleted");
    // A real compiler writes it again.
    with_compiler(env!("CARGO_BIN_EXE_stratbox-under-test").into()).load("sma", &bytes).unwrap();
    assert!(kept[0].exists());
}

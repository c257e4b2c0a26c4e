//! The shape of a component's code, checked before anything compiles it.
//!
//! Compiling is the costly step, bounded by the compiler child's time and
//! memory limits; this is the cheap step before it. One pass over the
//! binary counts the functions of every core module inside the component
//! and measures each one's body and locals, refusing what no real strategy
//! needs. The limits sit well above componentize-py's components (CPython
//! compiled to WebAssembly, the largest guests there are), so they refuse
//! only crafted input; the child's limits remain the real bound.

use wasmparser::{Parser, Payload};

/// What one component's code may add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    /// Functions with bodies, over all core modules.
    pub functions: u64,
    /// Bytes of one function's body.
    pub function_bytes: usize,
    /// Locals one function declares.
    pub locals: u64,
}

impl Default for ShapeLimits {
    fn default() -> Self {
        // componentize-py 0.25's SMA guest has 13,501 functions in 38
        // modules, the largest body 427 KB (CPython's interpreter loop), at
        // most 271 locals; the Rust `misbehave` guest 325, 13 KB and 81.
        Self { functions: 200_000, function_bytes: 4 << 20, locals: 20_000 }
    }
}

/// What a component's code amounts to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    pub modules: u64,
    pub functions: u64,
    pub largest_function_bytes: usize,
    pub most_locals: u64,
}

/// Why a component's code was refused before compiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("cannot be read: {reason}")]
    Malformed { reason: String },
    #[error("has {count} functions; at most {limit} are allowed")]
    Functions { count: u64, limit: u64 },
    #[error("has a function of {bytes} bytes; at most {limit} are allowed")]
    FunctionBytes { bytes: usize, limit: usize },
    #[error("has a function with {count} locals; at most {limit} are allowed")]
    Locals { count: u64, limit: u64 },
}

/// Measures `bytes`, stopping at the first limit it breaks.
pub fn check(bytes: &[u8], limits: ShapeLimits) -> Result<Shape, ShapeError> {
    let malformed = |e: wasmparser::BinaryReaderError| ShapeError::Malformed { reason: e.message().to_string() };
    let mut shape = Shape::default();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } => shape.modules += 1,
            Payload::CodeSectionStart { count, .. } => {
                shape.functions += u64::from(count);
                if shape.functions > limits.functions {
                    return Err(ShapeError::Functions { count: shape.functions, limit: limits.functions });
                }
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                if size > limits.function_bytes {
                    return Err(ShapeError::FunctionBytes { bytes: size, limit: limits.function_bytes });
                }
                shape.largest_function_bytes = shape.largest_function_bytes.max(size);
                let mut locals = 0_u64;
                for group in body.get_locals_reader().map_err(malformed)? {
                    let (count, _) = group.map_err(malformed)?;
                    locals = locals.saturating_add(u64::from(count));
                    if locals > limits.locals {
                        return Err(ShapeError::Locals { count: locals, limit: limits.locals });
                    }
                }
                shape.most_locals = shape.most_locals.max(locals);
            }
            _ => {}
        }
    }
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_strategy_is_well_within_the_limits() {
        let shape = check(super::super::BUNDLED[0].1, ShapeLimits::default()).unwrap();
        assert!(shape.modules >= 1 && shape.functions > 10, "{shape:?}");
        assert!(shape.largest_function_bytes < ShapeLimits::default().function_bytes / 10, "{shape:?}");
    }

    #[test]
    fn each_limit_refuses_on_its_own() {
        let bytes = super::super::BUNDLED[0].1;
        let shape = check(bytes, ShapeLimits::default()).unwrap();
        let tight = |change: fn(&mut ShapeLimits)| {
            let mut limits = ShapeLimits::default();
            change(&mut limits);
            check(bytes, limits).unwrap_err()
        };
        assert!(matches!(tight(|l| l.functions = 3), ShapeError::Functions { limit: 3, .. }));
        assert!(matches!(tight(|l| l.function_bytes = 100), ShapeError::FunctionBytes { limit: 100, .. }));
        assert!(matches!(tight(|l| l.locals = 2), ShapeError::Locals { limit: 2, .. }));
        assert!(shape.most_locals > 2);
    }

    #[test]
    fn garbage_and_truncation_are_refused_without_a_panic() {
        let bytes = super::super::BUNDLED[0].1;
        for cut in [9, 100, bytes.len() / 2, bytes.len() - 1] {
            assert!(matches!(check(&bytes[..cut], ShapeLimits::default()), Err(ShapeError::Malformed { .. })), "{cut}");
        }
        let mut flipped = bytes.to_vec();
        for i in (8..flipped.len()).step_by(997) {
            flipped[i] ^= 0xff;
        }
        let _ = check(&flipped, ShapeLimits::default());
    }
}

//! Webhooks: verifying signed deliveries coming in, signing ones going out.

mod standard;

pub use self::standard::{Secret, SignatureError, TOLERANCE_SECS, verify};

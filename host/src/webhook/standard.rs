//! Standard Webhooks (standardwebhooks.com) signatures.
//!
//! A delivery carries `webhook-id`, `webhook-timestamp` (unix seconds) and
//! `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` entries
//! over `{id}.{timestamp}.{raw body}`, keyed with the base64 part of a
//! `whsec_...` secret. Several secrets may be configured during a key
//! rotation; any signature matching any secret is accepted.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a timestamp may be from now, either way.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Why a delivery's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the secret is not `whsec_` followed by base64")]
    BadSecret,
    #[error("header {name} is missing")]
    MissingHeader { name: &'static str },
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {skew} s from now, beyond the tolerance of {TOLERANCE_SECS} s")]
    OutOfTolerance { skew: i64 },
    #[error("no signature matches")]
    NoMatch,
}

/// A signing key, decoded from its `whsec_` form.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let encoded = text.strip_prefix("whsec_").ok_or(SignatureError::BadSecret)?;
        let key = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| SignatureError::BadSecret)?;
        if key.is_empty() {
            return Err(SignatureError::BadSecret);
        }
        Ok(Self(key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("any key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `v1,<base64>` signature of a delivery, for sending one.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let digest = self.mac(id, &timestamp.to_string(), body).finalize().into_bytes();
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(digest))
    }

    /// Whether `signature` (base64, no prefix) is this key's, in constant time.
    fn matches(&self, id: &str, timestamp: &str, body: &[u8], signature: &[u8]) -> bool {
        self.mac(id, timestamp, body).verify_slice(signature).is_ok()
    }
}

/// Checks a delivery: the timestamp within tolerance of `now` (unix
/// seconds), and some listed `v1` signature made by some secret.
pub fn verify(
    secrets: &[Secret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let id = id.ok_or(SignatureError::MissingHeader { name: "webhook-id" })?;
    let timestamp = timestamp.ok_or(SignatureError::MissingHeader { name: "webhook-timestamp" })?;
    let signatures = signatures.ok_or(SignatureError::MissingHeader { name: "webhook-signature" })?;
    let sent: i64 = timestamp.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    let skew = sent.saturating_sub(now);
    if skew.abs() > TOLERANCE_SECS {
        return Err(SignatureError::OutOfTolerance { skew });
    }
    let candidates = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
    for candidate in candidates {
        if secrets.iter().any(|s| s.matches(id, timestamp, body, &candidate)) {
            return Ok(());
        }
    }
    Err(SignatureError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_published_vector() {
        let secret = Secret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TS, BODY), SIGNATURE);
        assert_eq!(verify(&[secret], Some(ID), Some("1614265330"), Some(SIGNATURE), BODY, TS), Ok(()));
    }

    #[test]
    fn any_listed_signature_and_any_secret_will_do() {
        let old = Secret::parse("whsec_c2VjcmV0LW9uZQ==").unwrap();
        let new = Secret::parse(SECRET).unwrap();
        let header = format!("v1,AAAA v2,whatever {SIGNATURE}");
        assert_eq!(verify(&[old, new], Some(ID), Some("1614265330"), Some(&header), BODY, TS + 60), Ok(()));
    }

    #[test]
    fn refuses_tampering_staleness_and_missing_headers() {
        let secret = [Secret::parse(SECRET).unwrap()];
        let check = |id, ts: &str, sig, body: &[u8], now| verify(&secret, Some(id), Some(ts), Some(sig), body, now);
        assert_eq!(check(ID, "1614265330", SIGNATURE, br#"{"test": 2432232315}"#, TS), Err(SignatureError::NoMatch));
        assert_eq!(check("msg_other", "1614265330", SIGNATURE, BODY, TS), Err(SignatureError::NoMatch));
        assert_eq!(check(ID, "1614265331", SIGNATURE, BODY, TS), Err(SignatureError::NoMatch));
        assert_eq!(
            check(ID, "1614265330", SIGNATURE, BODY, TS + 301),
            Err(SignatureError::OutOfTolerance { skew: -301 })
        );
        assert_eq!(
            check(ID, "1614265330", SIGNATURE, BODY, TS - 301),
            Err(SignatureError::OutOfTolerance { skew: 301 })
        );
        assert_eq!(check(ID, "soon", SIGNATURE, BODY, TS), Err(SignatureError::BadTimestamp));
        assert_eq!(check(ID, "1614265330", "v1,!!!not-base64", BODY, TS), Err(SignatureError::NoMatch));
        let missing = verify(&secret, None, Some("1"), Some(SIGNATURE), BODY, TS);
        assert_eq!(missing, Err(SignatureError::MissingHeader { name: "webhook-id" }));
    }

    #[test]
    fn refuses_malformed_secrets() {
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not base64!", "whsec_"] {
            assert!(Secret::parse(bad).is_err(), "{bad}");
        }
    }
}

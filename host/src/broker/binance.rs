//! Binance spot: request signing.
//!
//! SIGNED endpoints take a `signature` parameter: the lowercase hex
//! HMAC-SHA256, keyed with the API secret, of the exact query string (with
//! `timestamp` and `recvWindow` in it), plus the key in `X-MBX-APIKEY`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signs `payload` (a query string) with `secret`.
pub fn sign(secret: &str, payload: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_vector() {
        let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        assert_eq!(sign(secret, payload), "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71");
    }

    #[test]
    fn any_change_changes_the_signature() {
        let secret = "s";
        assert_ne!(sign(secret, "a=1"), sign(secret, "a=2"));
        assert_ne!(sign("t", "a=1"), sign(secret, "a=1"));
        assert_eq!(sign(secret, "a=1").len(), 64);
    }
}

//! Browser sessions for the dashboard: signing in with the control API's
//! token sets an HttpOnly cookie holding a random session id, so the token
//! is typed once and never kept by the page, the URL or script.
//!
//! The host keeps only each id's SHA-256 and its expiry, in memory: a
//! restart signs everyone out. Sessions last [`SESSION_LIFETIME`]; at most
//! [`MAX_SESSIONS`] are kept, the oldest dropped first.
//!
//! A request carried by the cookie alone may only change something when it
//! also sends the [`REQUEST_HEADER`] header. Browsers send cookies with
//! requests other sites start, but a page on another origin cannot add a
//! custom header without a CORS preflight this host never grants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};

/// The cookie's name.
pub const COOKIE: &str = "stratbox_session";

/// The header the dashboard's script sends with every request that changes
/// something.
pub const REQUEST_HEADER: &str = "x-stratbox-request";

/// How long a sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at once.
pub const MAX_SESSIONS: usize = 256;

/// The signed-in browsers.
#[derive(Clone, Default)]
pub struct Sessions {
    /// SHA-256 of each session id → when it expires.
    live: Arc<Mutex<HashMap<[u8; 32], Instant>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// No randomness to make a session id from.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a session id")]
pub struct SessionError(#[source] getrandom::Error);

impl Sessions {
    /// Starts a session; returns the `Set-Cookie` value that carries it.
    pub fn start(&self) -> Result<HeaderValue, SessionError> {
        let mut id = [0u8; 32];
        getrandom::getrandom(&mut id).map_err(SessionError)?;
        let id = hex::encode(id);
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.retain(|_, expires| *expires > now);
        while live.len() >= MAX_SESSIONS {
            let Some(oldest) = live.iter().min_by_key(|(_, expires)| **expires).map(|(k, _)| *k) else { break };
            live.remove(&oldest);
        }
        live.insert(digest(&id), now + SESSION_LIFETIME);
        let cookie =
            format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", SESSION_LIFETIME.as_secs());
        // Hex and fixed text: always a valid header value.
        Ok(HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("")))
    }

    /// Whether `headers` carry the cookie of a live session.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(id) = session_id(headers) else { return false };
        let live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.get(&digest(id)).is_some_and(|expires| *expires > Instant::now())
    }

    /// Ends the session `headers` carry, if any; returns the `Set-Cookie`
    /// value that clears the cookie.
    pub fn end(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(id) = session_id(headers) {
            let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            live.remove(&digest(id));
        }
        HeaderValue::from_static("stratbox_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    }
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The session id in the `Cookie` headers, if any.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| value.len() == 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_string();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {pair}")).unwrap());
        headers
    }

    #[test]
    fn a_started_session_is_admitted_until_it_ends() {
        let sessions = Sessions::default();
        let cookie = sessions.start().unwrap();
        let text = cookie.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict"), "{text}");
        let headers = with_cookie(&cookie);
        assert!(sessions.admits(&headers));
        assert!(!Sessions::default().admits(&headers), "another host's sessions");
        let cleared = sessions.end(&headers);
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
        assert!(!sessions.admits(&headers));
    }

    #[test]
    fn forged_and_malformed_cookies_are_refused() {
        let sessions = Sessions::default();
        let _ = sessions.start().unwrap();
        for cookie in ["", "stratbox_session=", "stratbox_session=abc", &format!("stratbox_session={}", "0".repeat(64))]
        {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            assert!(!sessions.admits(&headers), "{cookie}");
        }
    }

    #[test]
    fn the_oldest_sessions_make_room() {
        let sessions = Sessions::default();
        let first = with_cookie(&sessions.start().unwrap());
        for _ in 0..MAX_SESSIONS {
            sessions.start().unwrap();
        }
        assert!(!sessions.admits(&first));
        assert_eq!(sessions.live.lock().unwrap().len(), MAX_SESSIONS);
    }
}

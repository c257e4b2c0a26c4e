//! The control API's bearer token.
//!
//! Taken from `STRATBOX_API_TOKEN`, else `[server] api_token`. With none,
//! the control API is open, which the host allows only on a loopback
//! address; it refuses to start with no token on any other. Tokens are
//! compared in constant time. A browser signs in once with the token and
//! is then known by a session cookie (see [`super::session`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppError;
use super::session::{REQUEST_HEADER, Sessions};

/// The environment variable that holds the token.
pub const TOKEN_VARIABLE: &str = "STRATBOX_API_TOKEN";

/// The shortest token accepted.
const MIN_TOKEN_LEN: usize = 16;

/// What the control API asks of its callers.
#[derive(Clone)]
pub enum ApiToken {
    /// Nothing: the listener is on loopback only.
    Open,
    /// `Authorization: Bearer <token>`.
    Bearer { token: Arc<[u8]> },
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiToken::Open => f.write_str("Open"),
            ApiToken::Bearer { .. } => f.write_str("Bearer { .. }"),
        }
    }
}

/// Why the host will not serve the control API as configured.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no control API token is set and the host listens on {addr}, which is not loopback: set {TOKEN_VARIABLE} \
         or [server] api_token, or listen on 127.0.0.1"
    )]
    OpenOffLoopback { addr: SocketAddr },
    #[error("the control API token is {len} bytes; use at least {MIN_TOKEN_LEN}")]
    TooShort { len: usize },
}

impl ApiToken {
    /// The token from `variable` (the environment's), else `configured`;
    /// none is allowed only when `listen` is a loopback address.
    pub fn resolve(variable: Option<String>, configured: Option<&str>, listen: SocketAddr) -> Result<Self, AuthError> {
        let token = variable.filter(|t| !t.is_empty()).or_else(|| configured.map(str::to_string));
        match token {
            Some(token) if token.len() < MIN_TOKEN_LEN => Err(AuthError::TooShort { len: token.len() }),
            Some(token) => Ok(ApiToken::Bearer { token: Arc::from(token.into_bytes()) }),
            None if listen.ip().is_loopback() => Ok(ApiToken::Open),
            None => Err(AuthError::OpenOffLoopback { addr: listen }),
        }
    }

    /// Whether `request` carries the token as `Authorization: Bearer`.
    fn bears(&self, request: &Request) -> bool {
        let ApiToken::Bearer { token } = self else { return true };
        let offered = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let offered = offered.and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
        // Lengths may differ; `ct_eq` on slices of unequal length is false
        // without comparing, which reveals only the length.
        bool::from(offered.as_bytes().ct_eq(token))
    }

    /// Whether `offered` is the token (a sign-in form's).
    pub fn is(&self, offered: &str) -> bool {
        match self {
            ApiToken::Open => true,
            ApiToken::Bearer { token } => bool::from(offered.as_bytes().ct_eq(token)),
        }
    }
}

/// Who may use the control API: holders of the token, and browsers signed
/// in with it.
#[derive(Clone, Debug)]
pub struct Access {
    pub token: ApiToken,
    pub sessions: Sessions,
}

/// Why a request was refused before it reached its route.
enum Refusal {
    /// 401: no token and no session.
    Unauthenticated,
    /// 403: a request another site's page may have made.
    Foreign { why: &'static str },
}

impl Access {
    fn check(&self, request: &Request) -> Result<(), Refusal> {
        let headers = request.headers();
        if let Some(why) = foreign(headers, matches!(self.token, ApiToken::Open)) {
            return Err(Refusal::Foreign { why });
        }
        if self.token.bears(request) {
            return Ok(());
        }
        if !self.sessions.admits(headers) {
            return Err(Refusal::Unauthenticated);
        }
        let reads = matches!(*request.method(), Method::GET | Method::HEAD);
        if reads || headers.contains_key(REQUEST_HEADER) {
            Ok(())
        } else {
            Err(Refusal::Foreign { why: "a signed-in browser's request must carry the x-stratbox-request header" })
        }
    }
}

/// Why `headers` look like a request another site's page made, if they do.
///
/// A browser names the page's origin in `Origin` on every request that is
/// not a plain navigation; it must be this host. With no token (`open`, on
/// loopback only) the `Host` must also be a loopback address or
/// `localhost`, or a site whose name resolves to 127.0.0.1 could drive the
/// API from a page of its own (DNS rebinding).
pub(super) fn foreign(headers: &HeaderMap, open: bool) -> Option<&'static str> {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if open && let Some(host) = host {
        let name = host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host });
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let loopback =
            name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Some("with no token set, the host answers only requests addressed to a loopback name");
        }
    }
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site") {
        return Some("a request from another site's page");
    }
    // Every `Origin` sent must be this host (a client sending two is not a browser).
    let same = |origin: &axum::http::HeaderValue| {
        let authority = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, authority)| authority);
        authority.is_some_and(|authority| Some(authority) == host)
    };
    (!headers.get_all(ORIGIN).iter().all(same)).then_some("a request from another site's page")
}

/// Refuses a request without the token or a signed-in session (401, no
/// detail), or one another site's page may have made (403).
pub(super) async fn require(State(access): State<Access>, request: Request, next: Next) -> Response {
    match access.check(&request) {
        Ok(()) => next.run(request).await,
        Err(Refusal::Unauthenticated) => {
            let mut response = AppError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
            response.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
            response
        }
        Err(Refusal::Foreign { why }) => AppError::new(StatusCode::FORBIDDEN, why).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_token_is_allowed_on_loopback_only() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(matches!(ApiToken::resolve(None, None, loopback), Ok(ApiToken::Open)));
        assert!(matches!(ApiToken::resolve(None, None, "[::1]:1".parse().unwrap()), Ok(ApiToken::Open)));
        let err = ApiToken::resolve(None, None, public).unwrap_err().to_string();
        assert!(err.contains(TOKEN_VARIABLE) && err.contains("0.0.0.0:8080"), "{err}");
        assert!(matches!(ApiToken::resolve(Some("s".repeat(16)), None, public), Ok(ApiToken::Bearer { .. })));
        assert!(matches!(ApiToken::resolve(None, Some("short"), public), Err(AuthError::TooShort { len: 5 })));
        // An empty variable does not hide the config's token.
        let from_config = ApiToken::resolve(Some(String::new()), Some(&"c".repeat(20)), public).unwrap();
        assert!(matches!(from_config, ApiToken::Bearer { token } if token.len() == 20));
        assert_eq!(format!("{:?}", ApiToken::resolve(None, Some(&"c".repeat(20)), public).unwrap()), "Bearer { .. }");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn pages_of_other_sites_are_told_apart() {
        let same = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert_eq!(foreign(&same, true), None);
        assert_eq!(foreign(&headers(&[("host", "localhost:8080")]), true), None, "curl sends no Origin");
        assert_eq!(foreign(&headers(&[("host", "[::1]:8080")]), true), None);
        let other = headers(&[("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]);
        assert!(foreign(&other, true).is_some());
        assert!(foreign(&other, false).is_some());
        let rebound = headers(&[("host", "evil.example:8080"), ("origin", "http://evil.example:8080")]);
        assert!(foreign(&rebound, true).is_some(), "DNS rebinding onto an open host");
        assert_eq!(foreign(&rebound, false), None, "with a token the name does not matter");
        let fetched = headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]);
        assert!(foreign(&fetched, true).is_some());
        assert!(foreign(&headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]), true).is_some());
        let mut two = same.clone();
        two.append("origin", "https://evil.example".parse().unwrap());
        assert!(foreign(&two, false).is_some(), "a second Origin counts too");
    }
}

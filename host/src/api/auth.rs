//! The control API's bearer token.
//!
//! Taken from `STRATBOX_API_TOKEN`, else `[server] api_token`. With none,
//! the control API is open, which the host allows only on a loopback
//! address; it refuses to start with no token on any other. Tokens are
//! compared in constant time.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppError;

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

    fn admits(&self, request: &Request) -> bool {
        let ApiToken::Bearer { token } = self else { return true };
        let offered = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let offered = offered.and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
        // Lengths may differ; `ct_eq` on slices of unequal length is false
        // without comparing, which reveals only the length.
        bool::from(offered.as_bytes().ct_eq(token))
    }
}

/// Refuses a request without the token, with 401 and no detail.
pub(super) async fn require(State(token): State<ApiToken>, request: Request, next: Next) -> Response {
    if token.admits(&request) {
        next.run(request).await
    } else {
        let mut response = AppError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
        response.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        response
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
}

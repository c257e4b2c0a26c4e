//! Talking to a venue over HTTP: sending, reading bounded answers, and
//! saying precisely what went wrong.
//!
//! The distinction that matters for orders is whether a request may have
//! taken effect: [`VenueError::Unreachable`] means it never left, while
//! [`VenueError::Unknown`] (a timeout, a dropped connection, a 5XX) means
//! the venue may have acted on it and must be asked before anything is resent.

use std::time::Duration;

/// Longest piece of a response body quoted in an error or log line.
const EXCERPT: usize = 300;

/// Largest response body read, so a hostile venue cannot exhaust memory.
pub const MAX_BODY: usize = 32 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VenueError {
    #[error("{venue} {endpoint}: could not connect: {message}")]
    Unreachable { venue: &'static str, endpoint: String, message: String },
    #[error("{venue} {endpoint}: outcome unknown: {message}")]
    Unknown { venue: &'static str, endpoint: String, message: String },
    #[error("{venue} asked us to slow down")]
    Throttled { venue: &'static str, retry_after: Option<Duration> },
    /// A final refusal: resending the same request will not help.
    #[error(
        "{venue} {endpoint} refused the request ({status}{}): {message}",
        code.as_ref().map(|c| format!(", code {c}")).unwrap_or_default()
    )]
    Rejected { venue: &'static str, endpoint: String, status: u16, code: Option<VenueCode>, message: String },
    /// The venue did not accept our credentials (bad or revoked key, bad
    /// signature, no permission): nothing sent with them will succeed, so
    /// the venue should be halted rather than the request retried or the
    /// order rejected.
    #[error("{venue} {endpoint}: credentials refused ({status}): {message}")]
    Unauthorized { venue: &'static str, endpoint: String, status: u16, message: String },
    /// The venue refused the request for a passing reason (e.g. our clock
    /// is off) without acting on it: the same request may be sent again.
    #[error(
        "{venue} {endpoint} refused the request for now ({status}{}): {message}",
        code.as_ref().map(|c| format!(", code {c}")).unwrap_or_default()
    )]
    Transient { venue: &'static str, endpoint: String, status: u16, code: Option<VenueCode>, message: String },
    #[error("{venue} {endpoint} answered {status}: {body}")]
    Status { venue: &'static str, endpoint: String, status: u16, body: String },
    #[error("{venue} {endpoint}: malformed answer: {message} (body: {body})")]
    Malformed { venue: &'static str, endpoint: String, body: String, message: String },
    #[error("missing credentials: set the environment variable {var}")]
    MissingCredential { var: &'static str },
}

/// A venue's own error code: a number (Alpaca, Binance) or a name (Kalshi).
/// The name is boxed to keep [`VenueError`] small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VenueCode {
    Number(i64),
    Name(Box<String>),
}

impl VenueCode {
    pub fn name(name: impl Into<String>) -> Self {
        VenueCode::Name(Box::new(name.into()))
    }

    /// The code as a number, when it is one.
    pub fn number(&self) -> Option<i64> {
        match self {
            VenueCode::Number(n) => Some(*n),
            VenueCode::Name(_) => None,
        }
    }
}

impl std::fmt::Display for VenueCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VenueCode::Number(n) => write!(f, "{n}"),
            VenueCode::Name(name) => f.write_str(name),
        }
    }
}

impl VenueError {
    /// Whether the same request may simply be sent again: it never reached
    /// the venue, or the venue asked to wait. An `Unknown` outcome is not
    /// retryable as is; look the order up first. Neither is
    /// [`VenueError::Unauthorized`]: the same credentials will fail again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, VenueError::Unreachable { .. } | VenueError::Throttled { .. } | VenueError::Transient { .. })
    }

    /// Whether the venue refused our credentials; see [`VenueError::Unauthorized`].
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, VenueError::Unauthorized { .. })
    }
}

/// What a venue's error body says, read by that venue's own rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: Option<VenueCode>,
    /// The venue's text; an excerpt of the body when it has none.
    pub message: Option<String>,
    /// What the venue's code means beyond the HTTP status, if anything.
    pub means: Option<Means>,
}

/// What a venue error code means, where the HTTP status does not say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Means {
    /// The key or its signature was refused.
    Unauthorized,
    /// Refused for now, without acting on it (e.g. our clock is off).
    Transient,
}

/// Maps a non-2XX answer the same way for every venue: a 5XX leaves the
/// outcome unknown; 401, or a code the venue says means it, is the key
/// refused; a code that means "not now" may be sent again; anything else is
/// a final refusal, with the venue's code and text. `read` is the venue's
/// reading of its error body, given the status.
pub fn failure(
    venue: &'static str,
    endpoint: &str,
    status: u16,
    body: &[u8],
    read: impl FnOnce(u16, &[u8]) -> ErrorBody,
) -> VenueError {
    let endpoint = endpoint.to_string();
    if status >= 500 {
        return VenueError::Unknown { venue, endpoint, message: format!("HTTP {status}: {}", excerpt(body)) };
    }
    let ErrorBody { code, message, means } = read(status, body);
    let message = message.unwrap_or_else(|| excerpt(body));
    match means {
        _ if status == 401 => VenueError::Unauthorized { venue, endpoint, status, message },
        Some(Means::Unauthorized) => VenueError::Unauthorized { venue, endpoint, status, message },
        Some(Means::Transient) => VenueError::Transient { venue, endpoint, status, code, message },
        None => VenueError::Rejected { venue, endpoint, status, code, message },
    }
}

/// Cuts a body down for an error message.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT)]).into_owned();
    if body.len() > EXCERPT { format!("{text}… ({} bytes)", body.len()) } else { text }
}

/// The wait a `Retry-After` header asks for, in seconds form.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Sends a request and returns the status and body of any answer but a
/// throttle (429 or 418), which becomes [`VenueError::Throttled`].
pub async fn send(
    venue: &'static str,
    endpoint: &str,
    request: reqwest::RequestBuilder,
) -> Result<(u16, Vec<u8>), VenueError> {
    let transport = |e: reqwest::Error| {
        let message = e.to_string();
        if e.is_connect() {
            VenueError::Unreachable { venue, endpoint: endpoint.into(), message }
        } else {
            VenueError::Unknown { venue, endpoint: endpoint.into(), message }
        }
    };
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    if status == 429 || status == 418 {
        return Err(VenueError::Throttled { venue, retry_after: retry_after(&response) });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(VenueError::Malformed {
                venue,
                endpoint: endpoint.into(),
                body: excerpt(&body),
                message: format!("body exceeds {MAX_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// Sends a request whose only good answer is a 2XX, and returns its body;
/// any other answer is mapped by [`failure`], with `read` reading the
/// venue's error body.
pub async fn get_ok(
    venue: &'static str,
    endpoint: &str,
    request: reqwest::RequestBuilder,
    read: impl FnOnce(u16, &[u8]) -> ErrorBody,
) -> Result<Vec<u8>, VenueError> {
    let (status, body) = send(venue, endpoint, request).await?;
    if (200..300).contains(&status) { Ok(body) } else { Err(failure(venue, endpoint, status, &body, read)) }
}

/// Parses a JSON body, reporting a malformed one with an excerpt.
pub fn json<T: serde::de::DeserializeOwned>(venue: &'static str, endpoint: &str, body: &[u8]) -> Result<T, VenueError> {
    serde_json::from_slice(body).map_err(|e| VenueError::Malformed {
        venue,
        endpoint: endpoint.into(),
        body: excerpt(body),
        message: e.to_string(),
    })
}

/// Parses a decimal field of an answer, naming it and quoting the body if
/// it is not one.
pub fn decimal(
    venue: &'static str,
    endpoint: &str,
    body: &[u8],
    what: &str,
    text: &str,
) -> Result<rust_decimal::Decimal, VenueError> {
    <rust_decimal::Decimal as std::str::FromStr>::from_str(text).map_err(|_| VenueError::Malformed {
        venue,
        endpoint: endpoint.into(),
        body: excerpt(body),
        message: format!("{what} `{text}` is not a decimal"),
    })
}

/// What a path segment may hold as it is: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// An id made safe to stand as one segment of a URL path (an order id is
/// the venue's text and may hold `/` or `?`). Queries go through
/// reqwest's `.query` instead.
pub fn path_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

/// Reads a required secret through `lookup` (normally the environment).
pub fn required(var: &'static str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, VenueError> {
    match lookup(var) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(VenueError::MissingCredential { var }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every venue's answers map by one rule; only what its codes mean differs.
    #[test]
    fn failures_map_the_same_way_for_every_venue() {
        let read = |status: u16, body: &[u8]| ErrorBody {
            code: Some(VenueCode::Number(7)),
            message: (!body.is_empty()).then(|| "said so".to_string()),
            means: (status == 418).then_some(Means::Transient),
        };
        let unknown = failure("v", "/x", 503, b"oops", read);
        assert!(matches!(unknown, VenueError::Unknown { .. }), "{unknown}");
        let key = failure("v", "/x", 401, b"{}", read);
        assert!(key.is_unauthorized(), "{key}");
        let refused = failure("v", "/x", 422, b"", read);
        assert_eq!(refused.to_string(), "v /x refused the request (422, code 7): ");
        let refused = failure("v", "/x", 400, b"{}", read);
        assert!(matches!(refused, VenueError::Rejected { status: 400, .. }) && !refused.is_retryable());
        let later = failure("v", "/x", 418, b"{}", read);
        assert!(later.is_retryable(), "{later}");
        let hostile = failure("v", "/x", 400, &vec![b'x'; 1 << 20], |_, _| ErrorBody::default());
        assert!(hostile.to_string().len() < 1_000, "the body is quoted in part");
    }

    #[test]
    fn path_segments_keep_only_unreserved_characters() {
        assert_eq!(path_segment("sb-1f_2.x~"), "sb-1f_2.x~");
        assert_eq!(path_segment("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}

//! The HTTP plumbing shared by the venue feeds.

use std::time::Duration;

use super::FeedError;

/// Longest piece of a response body quoted in an error or log line.
const BODY_EXCERPT: usize = 300;

/// Largest response body read, so a hostile venue cannot exhaust memory.
pub const MAX_BODY: usize = 32 << 20;

/// Cuts a body down for an error message.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]).into_owned();
    if body.len() > BODY_EXCERPT { format!("{text}… ({} bytes)", body.len()) } else { text }
}

/// Sends a GET and returns the body of a 2XX answer; anything else becomes
/// a [`FeedError`] naming the venue and endpoint.
pub async fn get(venue: &'static str, request: reqwest::RequestBuilder, endpoint: &str) -> Result<Vec<u8>, FeedError> {
    let fail = |status: Option<u16>, body: &[u8], message: String| FeedError::Venue {
        venue,
        endpoint: endpoint.to_string(),
        status,
        body: excerpt(body),
        message,
    };
    let mut response = request.send().await.map_err(|e| fail(None, b"", format!("request failed: {e}")))?;
    let status = response.status();
    if status.as_u16() == 429 || status.as_u16() == 418 {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(FeedError::Throttled { venue, retry_after });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fail(Some(status.as_u16()), &body, format!("reading the body failed: {e}")))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(fail(Some(status.as_u16()), &body, format!("body exceeds {MAX_BODY} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(fail(Some(status.as_u16()), &body, format!("HTTP {status}")));
    }
    Ok(body)
}

/// Parses a JSON body, reporting a malformed one with an excerpt.
pub fn json<T: serde::de::DeserializeOwned>(venue: &'static str, endpoint: &str, body: &[u8]) -> Result<T, FeedError> {
    serde_json::from_slice(body).map_err(|e| FeedError::Venue {
        venue,
        endpoint: endpoint.to_string(),
        status: Some(200),
        body: excerpt(body),
        message: format!("malformed response: {e}"),
    })
}

/// Reads a required secret through `lookup` (normally the environment).
pub fn required(var: &'static str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, FeedError> {
    match lookup(var) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(FeedError::MissingCredential { var }),
    }
}

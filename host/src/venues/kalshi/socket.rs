//! Kalshi's WebSocket API (`/trade-api/ws/v2`), as its channels share it:
//! the opening request, signed as a REST `GET` of the path is, and the
//! `subscribe` command with its `subscribed` answer.

use std::time::Duration;

use tokio_tungstenite::tungstenite::handshake::client::Request;

use super::orders::KalshiCredentials;
use crate::stream::{Socket, StreamError, next_body, send_json};

/// The path the opening request signs.
pub(super) const PATH: &str = "/trade-api/ws/v2";

pub(super) fn malformed(message: String) -> StreamError {
    StreamError::Malformed { message: crate::runtime::bounded(&message) }
}

/// The opening request of a connection to `url`.
pub(super) fn request(credentials: &KalshiCredentials, url: &str) -> Result<Request, StreamError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = url.into_client_request().map_err(|source| StreamError::Connect { source })?;
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let signature = credentials.sign(timestamp, "GET", PATH);
    let header = |value: &str| {
        value.parse().map_err(|_| StreamError::Refused { message: "a credential is not a valid header".into() })
    };
    let headers = request.headers_mut();
    headers.insert("KALSHI-ACCESS-KEY", header(&credentials.key_id)?);
    headers.insert("KALSHI-ACCESS-TIMESTAMP", header(&timestamp.to_string())?);
    headers.insert("KALSHI-ACCESS-SIGNATURE", header(&signature)?);
    Ok(request)
}

/// Subscribes to `channel` with `params` besides the channel (e.g. the
/// markets), and waits for Kalshi to confirm it.
pub(super) async fn subscribe(
    socket: &mut Socket,
    limit: Duration,
    channel: &str,
    mut params: serde_json::Value,
) -> Result<(), StreamError> {
    params["channels"] = serde_json::json!([channel]);
    send_json(socket, &serde_json::json!({ "id": 1, "cmd": "subscribe", "params": params })).await?;
    let answer = next_body(socket, limit, "subscription").await?;
    let answer: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| malformed(format!("{e}: {}", crate::venue::excerpt(&answer))))?;
    match answer["type"].as_str() {
        Some("subscribed") if answer["msg"]["channel"] == channel => Ok(()),
        _ => {
            let message = format!("{} {}", answer["msg"]["code"], answer["msg"]["msg"].as_str().unwrap_or_default());
            Err(StreamError::Refused { message: crate::runtime::bounded(&message) })
        }
    }
}

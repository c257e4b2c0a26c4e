//! Venue streams: a venue pushes what changed over a WebSocket (an
//! order's new state, a bar as it closes), so the host hears of it without
//! waiting for its next poll.
//!
//! A stream is a shortcut, never the truth. What it says is taken in
//! through the same exactly-once rules as what a poll reads (fills keyed by
//! the order's cumulative filled quantity, bars by each symbol's cursor),
//! so something heard twice, late or out of order is taken once. After
//! every (re)connection the host polls at once, which backfills whatever
//! happened while the stream was down, and it keeps polling on its
//! interval as a safety net. This module is the part every venue shares:
//! connecting, the handshake's timeouts, watching for silence and
//! reconnecting; each venue's [`Protocol`] says what its messages mean.
//!
//! The connection is watched: a stream silent for [`Timings::silence`] is
//! pinged, and one that does not answer within [`Timings::answer`] is
//! treated as down. A lost stream is reconnected with exponential backoff
//! (with jitter) between [`Timings::backoff_min`] and
//! [`Timings::backoff_max`], reset once a connection has stayed up for 30
//! seconds, so a venue that refuses or drops connections is not hammered
//! (Binance allows 300 connections in 5 minutes per address).

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// What a stream tells its reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update<T> {
    /// Connected and subscribed, first or again: poll now to backfill.
    Connected,
    /// Something the venue pushed: an order's state, a bar.
    Item { item: T },
    /// Lost; reconnecting. Polling on the interval carries on meanwhile.
    Down { error: String },
}

/// Why a stream connection ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect: {source}")]
    Connect {
        #[source]
        source: tungstenite::Error,
    },
    #[error("no {what} within {limit:?}")]
    Timeout { what: &'static str, limit: Duration },
    #[error("refused: {message}")]
    Refused { message: String },
    #[error("the connection failed: {source}")]
    Socket {
        #[source]
        source: tungstenite::Error,
    },
    #[error("the venue closed the stream{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Closed { reason: String },
    #[error("silent for {silent:?}, and no answer to a ping")]
    Silent { silent: Duration },
    #[error("malformed message: {message}")]
    Malformed { message: String },
}

/// A WebSocket to a venue.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One venue's side of a stream: where it is, how a connection starts, and
/// what its messages mean.
pub trait Protocol: Send + Sync + 'static {
    /// What its messages carry.
    type Item: Send + 'static;

    fn venue(&self) -> &'static str;

    /// `ws://` or `wss://`.
    fn url(&self) -> &str;

    /// The opening request: the URL, and any headers the venue signs it with.
    fn request(&self) -> Result<tungstenite::handshake::client::Request, StreamError> {
        use tungstenite::client::IntoClientRequest as _;
        self.url().into_client_request().map_err(|source| StreamError::Connect { source })
    }

    /// Authenticates and subscribes on a fresh connection.
    fn handshake(&self, socket: &mut Socket, limit: Duration) -> impl Future<Output = Result<(), StreamError>> + Send;

    /// The items one message carries (none for a message of no interest).
    fn items(&self, message: &[u8]) -> Result<Vec<Self::Item>, StreamError>;
}

/// How a stream waits.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// For the connection and for each answer of the handshake.
    pub connect: Duration,
    /// Quiet this long, the stream is pinged.
    pub silence: Duration,
    /// ... and must say something within this.
    pub answer: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            silence: Duration::from_secs(30),
            answer: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// The largest message read; venues' updates are a few KiB.
const MAX_MESSAGE: usize = 1 << 20;

/// How long a connection must stay up for the backoff to start over.
const STEADY: Duration = Duration::from_secs(30);

/// Updates waiting for the desk; past this the stream waits for it.
const QUEUE: usize = 1024;

/// Starts `protocol`'s stream on its own task; it runs, reconnecting, until
/// the returned receiver is dropped.
pub fn spawn<P: Protocol>(protocol: P, timings: Timings) -> mpsc::Receiver<Update<P::Item>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(protocol, timings, tx));
    rx
}

async fn run<P: Protocol>(protocol: P, timings: Timings, tx: mpsc::Sender<Update<P::Item>>) {
    let venue = protocol.venue();
    let mut backoff = timings.backoff_min;
    loop {
        let mut listening = false;
        let started = tokio::time::Instant::now();
        let ended = session(&protocol, timings, &tx, &mut listening).await;
        if tx.is_closed() {
            return;
        }
        // Only a connection that stayed up resets the backoff: a venue that
        // accepts and drops at once is not reconnected to twice a second.
        if listening && started.elapsed() >= STEADY {
            backoff = timings.backoff_min;
        }
        let error = match ended {
            Ok(()) => return,
            Err(error) => crate::runtime::bounded(&error.to_string()),
        };
        tracing::warn!(venue, %error, retry_in = ?backoff, "stream down");
        if tx.send(Update::Down { error }).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff + jitter(backoff / 4)).await;
        backoff = (backoff * 2).min(timings.backoff_max);
    }
}

/// Up to `most`, from the clock's nanoseconds: hosts restarted together do
/// not reconnect in step.
fn jitter(most: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    most.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

/// One connection: handshake, then updates until it fails. `Ok` only when
/// the desk is gone.
async fn session<P: Protocol>(
    protocol: &P,
    timings: Timings,
    tx: &mpsc::Sender<Update<P::Item>>,
    listening: &mut bool,
) -> Result<(), StreamError> {
    let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
    let connect = tokio_tungstenite::connect_async_with_config(protocol.request()?, Some(config), true);
    let (mut socket, _) = tokio::time::timeout(timings.connect, connect)
        .await
        .map_err(|_| StreamError::Timeout { what: "connection", limit: timings.connect })?
        .map_err(|source| StreamError::Connect { source })?;
    protocol.handshake(&mut socket, timings.connect).await?;
    *listening = true;
    tracing::info!(venue = protocol.venue(), "stream listening");
    if tx.send(Update::Connected).await.is_err() {
        return Ok(());
    }
    let mut pinged = false;
    loop {
        let wait = if pinged { timings.answer } else { timings.silence };
        let next = tokio::select! {
            next = tokio::time::timeout(wait, socket.next()) => next,
            // Nobody reads any more (the host is stopping): hang up now.
            () = tx.closed() => return Ok(()),
        };
        let message = match next {
            Err(_) if pinged => return Err(StreamError::Silent { silent: timings.silence + timings.answer }),
            Err(_) => {
                socket
                    .send(Message::Ping(Default::default()))
                    .await
                    .map_err(|source| StreamError::Socket { source })?;
                pinged = true;
                continue;
            }
            Ok(None) => return Err(StreamError::Closed { reason: String::new() }),
            Ok(Some(Err(source))) => return Err(StreamError::Socket { source }),
            Ok(Some(Ok(message))) => message,
        };
        pinged = false;
        let body: &[u8] = match &message {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
            Message::Close(frame) => {
                let reason = frame.as_ref().map(|f| crate::runtime::bounded(&f.reason)).unwrap_or_default();
                return Err(StreamError::Closed { reason });
            }
            // Pings are answered by the socket itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        match protocol.items(body) {
            Ok(items) => {
                for item in items {
                    if tx.send(Update::Item { item }).await.is_err() {
                        return Ok(());
                    }
                }
            }
            // One bad message is skipped: the next poll reads what it said.
            Err(error) => tracing::warn!(venue = protocol.venue(), %error, "stream message skipped"),
        }
    }
}

/// The next message's body within `limit`, for a handshake.
pub async fn next_body(socket: &mut Socket, limit: Duration, what: &'static str) -> Result<Vec<u8>, StreamError> {
    loop {
        let message = tokio::time::timeout(limit, socket.next())
            .await
            .map_err(|_| StreamError::Timeout { what, limit })?
            .ok_or(StreamError::Closed { reason: String::new() })?
            .map_err(|source| StreamError::Socket { source })?;
        match message {
            Message::Text(text) => return Ok(text.as_bytes().to_vec()),
            Message::Binary(bytes) => return Ok(bytes.to_vec()),
            Message::Close(frame) => {
                let reason = frame.as_ref().map(|f| crate::runtime::bounded(&f.reason)).unwrap_or_default();
                return Err(StreamError::Closed { reason });
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Sends `value` as a text message.
pub async fn send_json(socket: &mut Socket, value: &serde_json::Value) -> Result<(), StreamError> {
    socket.send(Message::text(value.to_string())).await.map_err(|source| StreamError::Socket { source })
}

/// The WebSocket URL of `path` on the host of the HTTP `base` URL:
/// `https://paper-api.alpaca.markets` gives `wss://paper-api.alpaca.markets/stream`.
pub fn ws_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some(("http", rest)) => format!("ws://{rest}"),
        _ => base.to_string(),
    };
    format!("{base}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_follow_the_rest_base() {
        assert_eq!(ws_url("https://paper-api.alpaca.markets", "/stream"), "wss://paper-api.alpaca.markets/stream");
        assert_eq!(ws_url("http://127.0.0.1:9/", "/stream"), "ws://127.0.0.1:9/stream");
    }

    #[test]
    fn jitter_stays_under_its_bound() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(100)) < Duration::from_millis(100));
        }
    }
}

//! Alpaca's real-time minute bars: `wss://stream.data.alpaca.markets/v2/{feed}`
//! (`iex` or `sip`).
//!
//! The server greets with `[{"T": "success", "msg": "connected"}]`; the
//! client sends `{"action": "auth", "key", "secret"}` and waits for
//! `[{"T": "success", "msg": "authenticated"}]`, then subscribes with
//! `{"action": "subscribe", "bars": [...], "updatedBars": [...]}` and waits
//! for the `subscription` message listing them. Every message is an array;
//! a bar is `{"T": "b", "S", "o", "h", "l", "c", "v", "t"}` with numbers as
//! JSON numbers. Errors are `{"T": "error", "code", "msg"}`: 402 for a key
//! refused, 406 past the plan's one connection, 409 without the feed's
//! subscription.
//!
//! An updated bar (`"T": "u"`, a bar corrected by trades reported late)
//! arrives after its bar was delivered; a strategy sees each bar once, so
//! it is logged and not delivered, as a poll that read the corrected bar
//! after its cursor passed it would drop it.

use std::sync::Arc;
use std::time::Duration;

use super::AlpacaCredentials;
use super::bars::{WireBar, bar_from_wire};
use crate::bar::Bar;
use crate::stream::{Protocol, Socket, StreamError, next_body, send_json};

const VENUE: &str = "alpaca";

pub struct AlpacaBarStream {
    url: String,
    credentials: AlpacaCredentials,
    symbols: Vec<Arc<str>>,
}

impl AlpacaBarStream {
    pub fn new(url: String, credentials: AlpacaCredentials, symbols: Vec<Arc<str>>) -> Self {
        Self { url, credentials, symbols }
    }
}

fn malformed(message: String) -> StreamError {
    StreamError::Malformed { message: crate::runtime::bounded(&message) }
}

/// The elements of one message, each with its type `T`.
fn elements(body: &[u8]) -> Result<Vec<(String, serde_json::Value)>, StreamError> {
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| malformed(format!("{e}: {}", crate::venue::excerpt(body))))?;
    Ok(list
        .into_iter()
        .map(|element| (element.get("T").and_then(|t| t.as_str()).unwrap_or_default().to_string(), element))
        .collect())
}

/// Checks that a handshake answer says `success` with `expected`; an error
/// message is a refusal, with Alpaca's code and text.
fn expect_success(body: &[u8], expected: &str) -> Result<(), StreamError> {
    for (kind, element) in elements(body)? {
        let msg = element.get("msg").and_then(|m| m.as_str()).unwrap_or_default();
        match kind.as_str() {
            "success" if msg == expected => return Ok(()),
            "error" => {
                let code = element.get("code").and_then(|c| c.as_i64()).unwrap_or_default();
                return Err(StreamError::Refused { message: crate::runtime::bounded(&format!("{code} {msg}")) });
            }
            _ => {}
        }
    }
    Err(StreamError::Refused { message: format!("expected `{expected}`: {}", crate::venue::excerpt(body)) })
}

impl Protocol for AlpacaBarStream {
    type Item = Bar;

    fn venue(&self) -> &'static str {
        VENUE
    }

    fn url(&self) -> &str {
        &self.url
    }

    async fn handshake(&self, socket: &mut Socket, limit: Duration) -> Result<(), StreamError> {
        expect_success(&next_body(socket, limit, "greeting").await?, "connected")?;
        let auth = serde_json::json!({
            "action": "auth", "key": self.credentials.key_id, "secret": self.credentials.secret_key,
        });
        send_json(socket, &auth).await?;
        expect_success(&next_body(socket, limit, "authentication").await?, "authenticated")?;
        let symbols: Vec<&str> = self.symbols.iter().map(|s| &**s).collect();
        send_json(socket, &serde_json::json!({ "action": "subscribe", "bars": symbols, "updatedBars": symbols }))
            .await?;
        let answer = next_body(socket, limit, "subscription").await?;
        for (kind, element) in elements(&answer)? {
            match kind.as_str() {
                "subscription" => {
                    let bars = element.get("bars").and_then(|b| b.as_array()).cloned().unwrap_or_default();
                    let missing: Vec<&str> =
                        symbols.iter().copied().filter(|s| !bars.iter().any(|b| b == *s)).collect();
                    if missing.is_empty() {
                        return Ok(());
                    }
                    return Err(StreamError::Refused { message: format!("not subscribed to bars of {missing:?}") });
                }
                "error" => return expect_success(&answer, "subscription"),
                _ => {}
            }
        }
        Err(StreamError::Refused { message: format!("no subscription: {}", crate::venue::excerpt(&answer)) })
    }

    fn items(&self, message: &[u8]) -> Result<Vec<Bar>, StreamError> {
        let mut bars = Vec::new();
        for (kind, element) in elements(message)? {
            match kind.as_str() {
                "b" => {
                    // A stream bar is a page's bar with its symbol in `S`.
                    let name = element.get("S").and_then(|s| s.as_str()).unwrap_or_default();
                    // Share the configured symbol's allocation; ignore others.
                    let Some(symbol) = self.symbols.iter().find(|s| ***s == *name).cloned() else { continue };
                    let wire: WireBar =
                        serde_json::from_value(element).map_err(|e| malformed(format!("a bar: {e}")))?;
                    bars.push(bar_from_wire(&symbol, wire).map_err(malformed)?);
                }
                "u" => tracing::debug!(venue = VENUE, "an updated bar, after its bar was delivered: not delivered"),
                "error" => {
                    let text = element.get("msg").and_then(|m| m.as_str()).unwrap_or_default();
                    tracing::warn!(venue = VENUE, error = %crate::runtime::bounded(text), "the bar stream reports an error");
                }
                _ => {}
            }
        }
        Ok(bars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> AlpacaBarStream {
        let credentials = AlpacaCredentials { key_id: "k".into(), secret_key: "s".into() };
        AlpacaBarStream::new("ws://127.0.0.1:1/v2/iex".into(), credentials, vec![Arc::from("AAPL")])
    }

    #[test]
    fn bars_read_exactly_and_other_symbols_and_kinds_are_skipped() {
        let message = br#"[{"T":"b","S":"AAPL","o":4308.1522,"h":4310,"l":4300.01,"c":4309.5,"v":1234,
            "t":"2026-11-30T15:00:00Z","n":10,"vw":4305.2},
            {"T":"b","S":"MSFT","o":1,"h":1,"l":1,"c":1,"v":1,"t":"2026-11-30T15:00:00Z"},
            {"T":"u","S":"AAPL","o":1,"h":1,"l":1,"c":1,"v":1,"t":"2026-11-30T14:59:00Z"},
            {"T":"t","S":"AAPL","p":1}]"#;
        let bars = stream().items(message).unwrap();
        assert_eq!(bars.len(), 1);
        assert_eq!(bars[0].open.to_string(), "4308.1522", "exact, not through a double");
        assert_eq!(bars[0].time, 1_796_050_800_000);
    }

    #[test]
    fn malformed_bars_are_refused_briefly() {
        for bad in [
            &b"{\"T\":\"b\"}"[..],
            br#"[{"T":"b","S":"AAPL","o":"x","h":1,"l":1,"c":1,"v":1,"t":"2026-11-30T15:00:00Z"}]"#,
            br#"[{"T":"b","S":"AAPL","o":1,"h":1,"l":1,"c":1,"v":-5,"t":"2026-11-30T15:00:00Z"}]"#,
            br#"[{"T":"b","S":"AAPL","o":1,"h":1,"l":1,"c":1,"v":1,"t":"yesterday"}]"#,
        ] {
            let error = stream().items(bad).unwrap_err();
            assert!(matches!(error, StreamError::Malformed { .. }), "{error}");
        }
    }

    #[test]
    fn handshake_errors_carry_alpacas_code() {
        let error = expect_success(br#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#, "connected")
            .unwrap_err();
        assert_eq!(error.to_string(), "refused: 406 connection limit exceeded");
        assert!(expect_success(br#"[{"T":"success","msg":"connected"}]"#, "connected").is_ok());
    }
}

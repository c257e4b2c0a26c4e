//! Making a notification's text safe for the service it goes to: cut to the
//! service's size limit with a visible marker, Slack's control characters
//! escaped, form fields encoded.

/// What replaces the tail of a text cut to fit.
pub const TRUNCATED: &str = "…[truncated]";

/// `text` if it has at most `max` characters; otherwise its first
/// characters and [`TRUNCATED`], `max` characters in all, cut between
/// characters (never inside one).
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(TRUNCATED.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(TRUNCATED);
    out
}

/// Escapes the three characters Slack gives meaning to in message text
/// (`&`, `<`, `>`), so `<!channel>` or a link in a strategy's words is
/// shown, not acted on.
pub(super) fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Form-encodes a value (`application/x-www-form-urlencoded`).
pub(super) fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A journal line's JSON as a template value. Numbers go over by their
/// text (integers as integers), so a price renders exactly as journaled
/// whichever number representation serde_json was built with.
pub(super) fn template_value(value: &serde_json::Value) -> minijinja::Value {
    use serde_json::Value as Json;
    match value {
        Json::Null => minijinja::Value::from(()),
        Json::Bool(b) => minijinja::Value::from(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => minijinja::Value::from(i),
            None => minijinja::Value::from(n.to_string()),
        },
        Json::String(s) => minijinja::Value::from(s.as_str()),
        Json::Array(items) => minijinja::Value::from(items.iter().map(template_value).collect::<Vec<_>>()),
        Json::Object(fields) => minijinja::Value::from(
            fields.iter().map(|(k, v)| (k.clone(), template_value(v))).collect::<std::collections::BTreeMap<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(urlencode("+1 555 0100"), "%2B1+555+0100");
        assert_eq!(urlencode("a&b=c"), "a%26b%3Dc");
    }

    #[test]
    fn cuts_on_characters_with_a_marker_and_never_over_the_limit() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("exactly 10", 10), "exactly 10");
        for text in ["a".repeat(50), "é".repeat(50), "🦀".repeat(50), "a🦀é".repeat(20)] {
            for max in [13, 14, 20, 49] {
                let out = cut(&text, max);
                assert_eq!(out.chars().count(), max, "{text} {max}");
                assert!(out.ends_with(TRUNCATED), "{out}");
                assert!(text.starts_with(out.trim_end_matches(TRUNCATED)), "{out}");
            }
        }
        assert_eq!(cut("abcdef", 3), TRUNCATED, "a limit below the marker keeps only the marker");
    }

    #[test]
    fn numbers_render_as_written() {
        let data: serde_json::Value =
            serde_json::from_str(r#"{"n": 2, "price": 42150.50, "big": 18446744073709551616, "s": "x"}"#).unwrap();
        let out = minijinja::Environment::new()
            .render_str(
                "{{ data.n + 1 }} {{ data.price }} {{ data.big }} {{ data.s }}",
                minijinja::context! { data => template_value(&data) },
            )
            .unwrap();
        assert!(out.starts_with("3 42150.5") && out.ends_with(" 18446744073709551616 x"), "{out}");
    }

    #[test]
    fn slack_control_characters_are_escaped() {
        assert_eq!(slack_escape("<!channel> & <http://x|y>"), "&lt;!channel&gt; &amp; &lt;http://x|y&gt;");
        assert_eq!(slack_escape("&amp;"), "&amp;amp;", "escaped again, so shown as typed");
        assert_eq!(slack_escape("plain ✓"), "plain ✓");
    }
}

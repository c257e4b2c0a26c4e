//! The `[[sink]]` tables: where notifications go and how they are worded.

use std::collections::BTreeMap;
use std::str::FromStr;

use lettre::message::{Mailbox, Mailboxes};
use serde::Deserialize;

use crate::webhook::Secret;

/// Where notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// A Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// A Discord webhook: `{"content": ...}`, at most 2,000 characters.
    Discord,
    /// Any endpoint: `{"type", "timestamp", "data"}` signed as a Standard Webhook.
    Json,
    /// SMS through Twilio's Messages API.
    Twilio,
    /// Email over SMTP.
    Email,
}

/// How an email sink protects its SMTP session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS when the server offers it, plain text otherwise.
    #[default]
    Opportunistic,
    /// STARTTLS or no delivery: nothing is sent before the upgrade.
    Required,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    /// The webhook URL; for Twilio the API base (`https://api.twilio.com`);
    /// for email the server as `smtp://host:port`. Slack, Discord and Json
    /// may name an environment variable holding it in `url_env` instead
    /// (their URLs are themselves secrets).
    #[serde(default)]
    pub url: String,
    pub url_env: Option<String>,
    /// Event kinds to send (`order.accepted`, or a prefix such as `order.*`); empty sends all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Text per event kind, as a MiniJinja template over `kind`, `time` and `data`.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Json: the `whsec_` secret deliveries are signed with, or the
    /// environment variable holding it in `secret_env`.
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    /// Twilio: the account SID and the environment variable holding the auth token.
    pub account_sid: Option<String>,
    pub auth_token_env: Option<String>,
    /// Twilio: phone numbers. Email: addresses; `to` may list several, comma-separated.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Email: the subject, a MiniJinja template like `templates`.
    pub subject: Option<String>,
    /// Email: TLS for the SMTP session.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Email: the SMTP login and the environment variable holding its password.
    pub username: Option<String>,
    pub password_env: Option<String>,
    /// Email: a PEM file of extra root certificates (a private relay's CA).
    pub ca_file: Option<String>,
}

impl SinkConfig {
    /// Checks that the keys the kind needs are there and make sense;
    /// `key` renders a key of this table for the message.
    pub(crate) fn validate(&self, key: impl Fn(&str) -> String) -> Result<(), String> {
        let missing = |k: &str| format!("{}: required for {} sinks", key(k), format!("{:?}", self.kind).to_lowercase());
        let require = |pairs: &[(&str, &Option<String>)]| {
            pairs.iter().find(|(_, v)| v.is_none()).map_or(Ok(()), |(k, _)| Err(missing(k)))
        };
        match (self.url.is_empty(), &self.url_env) {
            (true, None) => {
                return Err(format!("{}: give the URL, or url_env naming a variable holding it", key("url")));
            }
            (false, Some(_)) => return Err(format!("{}: give url or url_env, not both", key("url_env"))),
            (true, Some(_)) if matches!(self.kind, SinkKind::Twilio | SinkKind::Email) => {
                return Err(format!("{}: only slack, discord and json sinks take it; write url", key("url_env")));
            }
            _ => {}
        }
        if self.kind != SinkKind::Json && (self.secret.is_some() || self.secret_env.is_some()) {
            return Err(format!("{}: only json sinks take it", key("secret")));
        }
        match self.kind {
            SinkKind::Json => match (&self.secret, &self.secret_env) {
                (Some(secret), None) if Secret::parse(secret).is_ok() => {}
                (Some(_), Some(_)) => {
                    return Err(format!("{}: give secret or secret_env, not both", key("secret_env")));
                }
                (None, Some(_)) => {}
                _ => return Err(format!("{}: a whsec_ secret (or secret_env) is required", key("secret"))),
            },
            SinkKind::Twilio => require(&[
                ("account_sid", &self.account_sid),
                ("auth_token_env", &self.auth_token_env),
                ("from", &self.from),
                ("to", &self.to),
            ])?,
            SinkKind::Email => {
                require(&[("from", &self.from), ("to", &self.to)])?;
                smtp_server(&self.url, self.tls).map_err(|e| format!("{}: {e}", key("url")))?;
                if let Some(from) = &self.from {
                    Mailbox::from_str(from).map_err(|e| format!("{}: `{from}` is not an address: {e}", key("from")))?;
                }
                if let Some(to) = &self.to {
                    Mailboxes::from_str(to)
                        .map_err(|e| format!("{}: `{to}` is not a list of addresses: {e}", key("to")))?;
                }
                match (&self.username, &self.password_env) {
                    (Some(_), None) => return Err(missing("password_env")),
                    (None, Some(_)) => return Err(missing("username")),
                    (Some(_), Some(_)) if self.tls == SmtpTls::Opportunistic => {
                        return Err(format!(
                            "{}: a login is never sent unencrypted; set tls = \"required\" or \"implicit\"",
                            key("tls")
                        ));
                    }
                    _ => {}
                }
            }
            SinkKind::Slack | SinkKind::Discord => {}
        }
        if self.kind != SinkKind::Email {
            for (k, v) in [("subject", &self.subject), ("username", &self.username), ("ca_file", &self.ca_file)] {
                if v.is_some() {
                    return Err(format!("{}: only email sinks take it", key(k)));
                }
            }
        }
        let templates = self.templates.iter().map(|(kind, t)| (format!("templates.{kind}"), t));
        for (k, template) in templates.chain(self.subject.iter().map(|t| ("subject".to_string(), t))) {
            minijinja::Environment::new().template_from_str(template).map_err(|e| format!("{}: {e}", key(&k)))?;
        }
        Ok(())
    }
}

/// The host and port of an `smtp://host[:port]` URL; the port defaults to
/// 465 for implicit TLS and 587 (submission) otherwise.
pub(crate) fn smtp_server(url: &str, tls: SmtpTls) -> Result<(String, u16), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if parsed.scheme() != "smtp" {
        return Err(format!("`{url}`: write the server as smtp://host:port"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.path().len() > 1 {
        return Err(format!("`{url}`: give only host and port; the login goes in username and password_env"));
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("`{url}` names no host"))?;
    Ok((
        host.trim_start_matches('[').trim_end_matches(']').to_string(),
        parsed.port().unwrap_or(if tls == SmtpTls::Implicit { 465 } else { 587 }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<(), String> {
        let sink: SinkConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        sink.validate(|k| format!("key `sink[0].{k}`"))
    }

    const MAIL: &str = "name = \"m\"\nkind = \"email\"\nurl = \"smtp://mail.example.com\"\n";

    #[test]
    fn email_sinks_are_checked_before_anything_is_sent() {
        let with = |extra: &str| check(&format!("{MAIL}{extra}"));
        assert_eq!(with("from = \"a@example.com\"\nto = \"b@example.com, C <c@example.com>\""), Ok(()));
        let cases = [
            ("to = \"b@example.com\"", "sink[0].from`: required"),
            ("from = \"not an address\"\nto = \"b@example.com\"", "sink[0].from`: `not an address`"),
            ("from = \"a@example.com\"\nto = \"b@example.com,,\"", "sink[0].to`"),
            (
                "from = \"a@example.com\"\nto = \"b@example.com\"\nusername = \"u\"\npassword_env = \"P\"",
                "never sent unencrypted",
            ),
            ("from = \"a@example.com\"\nto = \"b@example.com\"\nusername = \"u\"", "password_env`: required"),
            ("from = \"a@example.com\"\nto = \"b@example.com\"\nsubject = \"{{ kind\"", "sink[0].subject`"),
            ("from = \"a@example.com\"\nto = \"b@example.com\"\ntls = \"maybe\"", "unknown variant"),
        ];
        for (extra, expected) in cases {
            let error = with(extra).unwrap_err();
            assert!(error.contains(expected), "{extra}: {error}");
        }
        let ftp =
            check(&format!("{}from = \"a@example.com\"\nto = \"b@example.com\"", MAIL.replace("smtp://", "ftp://")))
                .unwrap_err();
        assert!(ftp.contains("sink[0].url`"), "{ftp}");
        let slack = check("name = \"s\"\nkind = \"slack\"\nurl = \"https://hooks.example\"\nsubject = \"x\"");
        assert!(slack.unwrap_err().contains("only email sinks"));
    }

    #[test]
    fn secrets_come_from_the_config_or_from_a_variable_but_not_both() {
        const JSON_SECRET: &str = "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n";
        let ok = [
            "kind = \"slack\"\nurl_env = \"SLACK_URL\"",
            "kind = \"discord\"\nurl = \"https://discord.example\"",
            "kind = \"json\"\nurl_env = \"HOOK_URL\"\nsecret_env = \"HOOK_SECRET\"",
            &format!("kind = \"json\"\nurl = \"https://x.example\"\n{JSON_SECRET}"),
        ];
        for body in ok {
            assert_eq!(check(&format!("name = \"s\"\n{body}")), Ok(()), "{body}");
        }
        let bad = [
            ("kind = \"slack\"", "sink[0].url`: give the URL"),
            ("kind = \"slack\"\nurl = \"https://a\"\nurl_env = \"U\"", "not both"),
            ("kind = \"email\"\nurl_env = \"U\"\nfrom = \"a@b.c\"\nto = \"a@b.c\"", "only slack, discord and json"),
            ("kind = \"json\"\nurl = \"https://a\"", "whsec_ secret (or secret_env) is required"),
            (&format!("kind = \"json\"\nurl = \"https://a\"\nsecret_env = \"S\"\n{JSON_SECRET}"), "not both"),
            ("kind = \"json\"\nurl = \"https://a\"\nsecret = \"plain\"", "whsec_ secret"),
            ("kind = \"slack\"\nurl = \"https://a\"\nsecret_env = \"S\"", "only json sinks"),
        ];
        for (body, expected) in bad {
            let error = check(&format!("name = \"s\"\n{body}")).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn smtp_urls() {
        assert_eq!(
            smtp_server("smtp://mail.example.com", SmtpTls::Required).unwrap(),
            ("mail.example.com".into(), 587)
        );
        assert_eq!(
            smtp_server("smtp://mail.example.com", SmtpTls::Implicit).unwrap(),
            ("mail.example.com".into(), 465)
        );
        assert_eq!(smtp_server("smtp://127.0.0.1:2525", SmtpTls::Opportunistic).unwrap(), ("127.0.0.1".into(), 2525));
        assert!(smtp_server("https://mail.example.com", SmtpTls::Opportunistic).is_err());
        assert!(smtp_server("smtp://user:pw@mail.example.com", SmtpTls::Opportunistic).is_err());
        assert!(smtp_server("smtp://", SmtpTls::Opportunistic).is_err());
        assert!(smtp_server("not a url", SmtpTls::Opportunistic).is_err());
    }
}

//! Email sinks: one SMTP transport per sink, built when the notifier starts.

use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::sink::{SinkConfig, SmtpTls, smtp_server};
use super::{NotifyError, Outcome};

/// How long one SMTP exchange may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Sends one sink's notifications as plain-text mail.
pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Mailboxes,
}

impl Mailer {
    /// Builds the transport: server, TLS mode, trusted roots and login.
    pub(super) fn new(sink: &SinkConfig) -> Result<Self, NotifyError> {
        let invalid = |message: String| NotifyError::Sink { sink: sink.name.clone(), message };
        let (host, port) = smtp_server(&sink.url, sink.tls).map_err(invalid)?;
        let from = sink.from.as_deref().unwrap_or_default();
        let from = Mailbox::from_str(from).map_err(|e| invalid(format!("`{from}` is not an address: {e}")))?;
        let to = sink.to.as_deref().unwrap_or_default();
        let to = Mailboxes::from_str(to).map_err(|e| invalid(format!("`{to}` is not a list of addresses: {e}")))?;

        let mut tls = TlsParameters::builder(host.clone());
        if let Some(path) = &sink.ca_file {
            let pem = std::fs::read(path).map_err(|e| invalid(format!("cannot read ca_file {path}: {e}")))?;
            let certificate =
                Certificate::from_pem(&pem).map_err(|e| invalid(format!("ca_file {path} is not PEM: {e}")))?;
            tls = tls.add_root_certificate(certificate);
        }
        let tls = tls.build().map_err(|e| invalid(format!("cannot set up TLS: {e}")))?;
        let tls = match sink.tls {
            SmtpTls::Opportunistic => Tls::Opportunistic(tls),
            SmtpTls::Required => Tls::Required(tls),
            SmtpTls::Implicit => Tls::Wrapper(tls),
        };
        let mut transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).tls(tls).timeout(Some(TIMEOUT));
        if let (Some(user), Some(var)) = (&sink.username, &sink.password_env) {
            let (name, what) = (sink.name.clone(), "the SMTP password");
            let password = std::env::var(var).map_err(|source| NotifyError::Env {
                sink: name.clone(),
                var: var.clone(),
                what,
                source,
            })?;
            if password.trim().is_empty() {
                return Err(NotifyError::EmptyEnv { sink: name, var: var.clone(), what });
            }
            transport = transport.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Self { transport: transport.build(), from, to })
    }

    /// Sends one message: 4XX replies and lost connections are retried,
    /// 5XX replies are final.
    pub(super) async fn send(&self, subject: &str, body: String) -> Outcome {
        let mut message = Message::builder().from(self.from.clone()).subject(subject.replace(['\r', '\n'], " "));
        for to in self.to.iter() {
            message = message.to(to.clone());
        }
        let message = match message.header(ContentType::TEXT_PLAIN).body(body) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "cannot build an email");
                return Outcome::Drop { status: 0, cause: format!("cannot build the email: {error}") };
            }
        };
        match self.transport.send(message).await {
            Ok(_) => Outcome::Sent,
            Err(error) if error.is_permanent() => {
                Outcome::Drop { status: error.status().map_or(0, u16::from), cause: format!("SMTP: {error}") }
            }
            Err(error) => {
                tracing::warn!(%error, "email not sent yet");
                Outcome::Retry { after: None, cause: format!("SMTP: {error}") }
            }
        }
    }
}

//! One summary line per mail transaction: sender, each recipient with the
//! reply it got, the final reply, size and duration. Never the body.

use crate::metrics::Metrics;
use crate::smtp::Reply;
use std::time::Instant;

/// The command a reply answers, as far as the summary cares.
#[derive(Debug, Clone)]
pub enum Answered {
    /// MAIL FROM with this reverse path.
    Mail(String),
    /// RCPT TO with this forward path.
    Rcpt(String),
    /// DATA (and, after its 354, the end of the message).
    Data,
    /// RSET, HELO, EHLO or QUIT: an open transaction ends.
    Reset,
    /// Anything else.
    Other,
}

/// The transaction being summarised.
#[derive(Debug, Default)]
pub struct Transcript {
    started: Option<Instant>,
    sender: String,
    recipients: Vec<String>,
    in_data: bool,
    bytes: u64,
    /// `hook:module` of each chain refusal in this transaction.
    refused_by: Vec<String>,
}

impl Transcript {
    /// Note the reply to a command.
    pub fn answered(&mut self, command: &Answered, reply: &Reply, metrics: &Metrics) {
        match command {
            Answered::Mail(sender) if reply.is_positive() => {
                self.abandon(metrics);
                self.started = Some(Instant::now());
                self.sender = sender.clone();
            }
            Answered::Rcpt(recipient) if self.started.is_some() => {
                self.recipients
                    .push(format!("{recipient} ({})", reply.code()));
            }
            Answered::Data if self.in_data => self.finish(Some(reply), metrics),
            Answered::Reset => self.abandon(metrics),
            _ => {}
        }
    }

    /// The chain module `module` refused at `hook`: named in the line of
    /// the open transaction, if any.
    pub fn refused_by(&mut self, hook: &str, module: &str) {
        if self.started.is_some() {
            self.refused_by.push(format!("{hook}:{module}"));
        }
    }

    /// The client got its 354 and sends the message.
    pub fn data_started(&mut self) {
        self.in_data = true;
    }

    /// The message's size, once received.
    pub fn data_size(&mut self, bytes: u64) {
        self.bytes = bytes;
    }

    /// The session ends (or a new transaction starts) with this one open.
    pub fn abandon(&mut self, metrics: &Metrics) {
        if self.started.is_some() {
            self.finish(None, metrics);
        }
    }

    fn finish(&mut self, reply: Option<&Reply>, metrics: &Metrics) {
        let outcome = match reply {
            None => "abandoned",
            Some(r) if r.is_positive() => "delivered",
            Some(r) if r.is_transient() => "failed",
            Some(_) => "rejected",
        };
        metrics.transaction(outcome);
        let duration_ms = self.started.map_or(0, |t| t.elapsed().as_millis());
        tracing::info!(
            outcome,
            sender = %self.sender,
            recipients = ?self.recipients,
            refused_by = ?self.refused_by,
            reply = %reply.map(ToString::to_string).unwrap_or_default(),
            bytes = self.bytes,
            duration_ms = u64::try_from(duration_ms).unwrap_or(u64::MAX),
            "transaction"
        );
        *self = Self::default();
    }
}

//! Runs one [`Session`] to its end with no sockets: a scripted client sends
//! the command lines a [`ClientStep`] list implies, the loaded policy (or
//! chain, through the same [`ask_in_order`] as the connection driver)
//! answers the session's questions exactly as the connection driver asks
//! them, a [`ScriptedUpstream`] answers the upstream steps and
//! [`ScriptedCredentials`] the AUTH checks. `relaygate policy test` is built on it, so an offline
//! case meets the proxy's own hook order, context and replies.
//!
//! It is a driver of the session, as `connection` is for real clients, so it
//! lives here beside its only user rather than inside `session` (which asks
//! nothing of a policy itself); it has no socket, resolver or clock.

use crate::config::PolicyMode;
use crate::hook::{Decision, Hook, MessageSummary, PolicyContext, PolicyRequest};
use crate::policy::{AskModule, PolicyAnswer, PolicyInstance, ask_in_order};
use crate::session::sasl::{AuthAttempt, CredentialCheck};
use crate::session::{Action, DataOutcome, Session, UpstreamProblem, UpstreamStep};
use crate::smtp::{Reply, parse_command};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::VecDeque;
use std::sync::Arc;

/// The password every scripted AUTH sends (cases name only an identity).
pub const SCRIPTED_PASSWORD: &str = "offline-password";

/// One thing the scripted client does, answered by one final reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// `EHLO name` (or `HELO name` when not `extended`).
    Hello {
        /// The name given.
        name: String,
        /// EHLO rather than HELO.
        extended: bool,
    },
    /// `AUTH mechanism` for `user` with [`SCRIPTED_PASSWORD`]: PLAIN with
    /// an initial response, LOGIN answering its two challenges.
    Auth {
        /// The mechanism as the client names it.
        mechanism: String,
        /// The authentication identity.
        user: String,
    },
    /// `MAIL FROM:<sender>`, with ` SMTPUTF8` when `smtputf8`.
    Mail {
        /// Reverse path ("" for the null sender).
        sender: String,
        /// Ask for an SMTPUTF8 transaction (RFC 6531), as a client must
        /// for a non-ASCII address.
        smtputf8: bool,
    },
    /// `RCPT TO:<recipient>`.
    Rcpt {
        /// Forward path.
        recipient: String,
    },
    /// `DATA`, then a message the data hook sees as `message`.
    Data {
        /// What the message amounts to once received.
        message: MessageSummary,
    },
}

impl ClientStep {
    /// The command line the client sends (without its line ending).
    pub fn command_line(&self) -> String {
        match self {
            ClientStep::Hello { name, extended } => {
                format!("{} {name}", if *extended { "EHLO" } else { "HELO" })
            }
            ClientStep::Auth { mechanism, user } if mechanism.eq_ignore_ascii_case("PLAIN") => {
                let response = format!("\0{user}\0{SCRIPTED_PASSWORD}");
                format!("AUTH {mechanism} {}", BASE64.encode(response))
            }
            ClientStep::Auth { mechanism, .. } => format!("AUTH {mechanism}"),
            ClientStep::Mail { sender, smtputf8 } => {
                let param = if *smtputf8 { " SMTPUTF8" } else { "" };
                format!("MAIL FROM:<{sender}>{param}")
            }
            ClientStep::Rcpt { recipient } => format!("RCPT TO:<{recipient}>"),
            ClientStep::Data { .. } => "DATA".to_string(),
        }
    }

    /// The lines answering the server's AUTH challenges, in order.
    pub fn challenge_responses(&self) -> Vec<String> {
        match self {
            ClientStep::Auth { mechanism, user } if mechanism.eq_ignore_ascii_case("LOGIN") => {
                vec![BASE64.encode(user), BASE64.encode(SCRIPTED_PASSWORD)]
            }
            _ => Vec::new(),
        }
    }

    /// The command verb, for explanations (never the AUTH response, which
    /// carries the password).
    pub fn verb(&self) -> &'static str {
        match self {
            ClientStep::Hello { extended: true, .. } => "EHLO",
            ClientStep::Hello { .. } => "HELO",
            ClientStep::Auth { .. } => "AUTH",
            ClientStep::Mail { .. } => "MAIL",
            ClientStep::Rcpt { .. } => "RCPT",
            ClientStep::Data { .. } => "DATA",
        }
    }

    /// Whether a client goes on after this final reply: past a refused
    /// recipient, as SMTP allows, but not past a refused greeting, AUTH,
    /// MAIL or message.
    pub fn goes_on_after(&self, reply: &Reply) -> bool {
        matches!(self, ClientStep::Rcpt { .. }) || reply.code() < 400
    }
}

/// One policy call the session made, with the policy's answer.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The question.
    pub request: PolicyRequest,
    /// The answer, as the policy gave it (of a chain: the refusing
    /// module's, or the chain's combined acceptance).
    pub answer: PolicyAnswer,
    /// Of a chain: the module whose refusal answered.
    pub decided_by: Option<Arc<str>>,
}

/// What one exchange gave: the connection itself (the greeting) or one
/// [`ClientStep`].
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// The policy calls it caused, in order.
    pub asked: Vec<Asked>,
    /// The final reply the client got (the 354 to DATA is intermediate).
    pub reply: Option<Reply>,
    /// The session ended with that reply.
    pub closed: bool,
}

impl Exchange {
    /// The answer of the call to `hook`, if the session made it.
    pub fn answer(&self, hook: Hook) -> Option<&PolicyAnswer> {
        self.asked_at(hook).map(|asked| &asked.answer)
    }

    /// The call to `hook`, if the session made it.
    pub fn asked_at(&self, hook: Hook) -> Option<&Asked> {
        self.asked.iter().find(|asked| asked.request.hook() == hook)
    }
}

/// The exchanges of a run: `connection` first, then one per step sent, in
/// order; steps after the client stopped (or the session closed) are absent.
#[derive(Debug, Clone, Default)]
pub struct OfflineRun {
    /// The greeting: the connect hook and the 220/554/421.
    pub connection: Exchange,
    /// One per step the client sent.
    pub steps: Vec<Exchange>,
}

/// The upstream as a script: a greeting, EHLO capabilities, and a reply to
/// each transaction step (250, and 354 to DATA, unless told otherwise).
#[derive(Debug, Clone)]
pub struct ScriptedUpstream {
    /// Its greeting; anything but 2xx makes it unavailable.
    pub greeting: Reply,
    /// The EHLO keywords it offers.
    pub capabilities: Vec<String>,
    /// Its reply to MAIL.
    pub mail: Reply,
    /// Its reply to RCPT.
    pub rcpt: Reply,
    /// Its reply to DATA.
    pub data: Reply,
    /// Its reply to the end of the message.
    pub end_data: Reply,
    open: bool,
}

impl Default for ScriptedUpstream {
    fn default() -> Self {
        Self {
            greeting: Reply::new(220, "upstream.invalid ESMTP"),
            capabilities: ["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "XCLIENT"]
                .iter()
                .map(ToString::to_string)
                .collect(),
            mail: Reply::new(250, "2.1.0 Ok"),
            rcpt: Reply::new(250, "2.1.5 Ok"),
            data: Reply::new(354, "End data with <CR><LF>.<CR><LF>"),
            end_data: Reply::new(250, "2.0.0 Ok: queued"),
            open: false,
        }
    }
}

impl ScriptedUpstream {
    /// It offers SMTPUTF8 (what the proxy learns from the real upstream's EHLO).
    pub fn smtputf8(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case("SMTPUTF8"))
    }

    /// Answer one step, opening the connection at MAIL as the driver does.
    fn answer(&mut self, step: &UpstreamStep) -> Result<Reply, UpstreamProblem> {
        if !self.open {
            if !matches!(step, UpstreamStep::Mail { .. }) || !self.greeting.is_positive() {
                return Err(UpstreamProblem::Unavailable);
            }
            self.open = true;
        }
        Ok(match step {
            UpstreamStep::Mail { .. } => self.mail.clone(),
            UpstreamStep::Rcpt { .. } => self.rcpt.clone(),
            UpstreamStep::Data => self.data.clone(),
            UpstreamStep::EndData => self.end_data.clone(),
        })
    }

    /// Drop the connection (after AUTH, or to abandon a transaction).
    fn close(&mut self) {
        self.open = false;
    }
}

/// The credential backend as a script: one user whose password is
/// [`SCRIPTED_PASSWORD`]; everyone else is rejected.
#[derive(Debug, Clone, Default)]
pub struct ScriptedCredentials {
    /// The one user that exists.
    pub user: Option<String>,
}

impl ScriptedCredentials {
    fn check(&self, attempt: &AuthAttempt) -> CredentialCheck {
        let known = self.user.as_deref() == Some(attempt.user.as_str());
        if known && attempt.password.as_str() == SCRIPTED_PASSWORD {
            CredentialCheck::Accepted
        } else {
            CredentialCheck::Rejected
        }
    }
}

/// A session, its policy (or chain) and its scripted peers.
pub struct OfflineSession {
    session: Session,
    modules: Vec<(Arc<str>, PolicyInstance)>,
    chain: bool,
    upstream: ScriptedUpstream,
    credentials: ScriptedCredentials,
}

/// Asks one module offline and keeps every answer.
struct OfflineAsker<'a> {
    context: &'a PolicyContext,
    answers: Vec<(Arc<str>, PolicyAnswer)>,
}

impl AskModule<PolicyInstance> for OfflineAsker<'_> {
    async fn ask(
        &mut self,
        name: &Arc<str>,
        instance: &mut PolicyInstance,
        request: &PolicyRequest,
    ) -> (PolicyMode, PolicyAnswer) {
        let mode = instance.policy().settings().mode;
        let answer = instance.ask(self.context, request).await;
        self.answers.push((name.clone(), answer.clone()));
        (mode, answer)
    }
}

impl OfflineSession {
    /// Everything one run needs; the session's context is what the policy
    /// is shown at connect.
    pub fn new(
        session: Session,
        policy: PolicyInstance,
        upstream: ScriptedUpstream,
        credentials: ScriptedCredentials,
    ) -> Self {
        Self {
            session,
            modules: vec![(Arc::from(crate::config::DEFAULT_CHAIN_MODULE), policy)],
            chain: false,
            upstream,
            credentials,
        }
    }

    /// As [`OfflineSession::new`], asking `modules` (name, instance) as a
    /// chain: in order, as the connection driver asks them (README.md,
    /// "Policy chains").
    pub fn chain(
        session: Session,
        modules: Vec<(Arc<str>, PolicyInstance)>,
        upstream: ScriptedUpstream,
        credentials: ScriptedCredentials,
    ) -> Self {
        Self {
            session,
            modules,
            chain: true,
            upstream,
            credentials,
        }
    }

    /// Ask the module (or chain) `request`: the decision and offer the
    /// session acts on, and what the exchange records.
    async fn ask(&mut self, request: PolicyRequest) -> (Decision, crate::hook::Offer, Asked) {
        let mut asker = OfflineAsker {
            context: self.session.context(),
            answers: Vec::new(),
        };
        let verdict = ask_in_order(&mut self.modules, request.clone(), &mut asker).await;
        let mut answers = asker.answers;
        let decided_by = verdict.decided_by().cloned();
        let answer = if !self.chain && answers.len() == 1 {
            // A lone module: its answer as it gave it.
            answers.remove(0).1
        } else if let Some(by) = &decided_by {
            answers
                .into_iter()
                .find(|(name, _)| name == by)
                .map(|(_, answer)| answer)
                .unwrap_or_else(|| combined(&verdict))
        } else {
            combined(&verdict)
        };
        let decision = if self.chain {
            verdict.decision().clone()
        } else {
            answer.decision.clone()
        };
        let offer = if self.chain {
            verdict.offer()
        } else {
            answer.offer
        };
        let asked = Asked {
            request,
            answer,
            decided_by: decided_by.filter(|_| self.chain),
        };
        (decision, offer, asked)
    }

    /// Play `steps` from the greeting on, stopping where a client would
    /// ([`ClientStep::goes_on_after`]) or the session ends, then QUIT.
    pub async fn run(mut self, steps: &[ClientStep]) -> OfflineRun {
        let mut run = OfflineRun::default();
        let mut current = Exchange::default();
        let mut next = steps.iter();
        let mut step: Option<&ClientStep> = None;
        let mut responses = VecDeque::new();
        let mut quitting = false;
        let mut action = self.session.start();
        loop {
            action = match action {
                Action::Ask(request) => {
                    let hook = request.hook();
                    let (decision, offer, asked) = self.ask(request).await;
                    if hook == Hook::Auth && decision == Decision::Accept {
                        // As the driver: the next MAIL opens a connection
                        // whose XCLIENT carries the identity.
                        self.upstream.close();
                    }
                    let action = self.session.policy_answered(decision, offer);
                    current.asked.push(asked);
                    action
                }
                Action::Upstream(upstream_step) => {
                    let reply = self.upstream.answer(&upstream_step);
                    if reply.is_err() {
                        self.upstream.close();
                    }
                    self.session.upstream_answered(reply)
                }
                Action::ReceiveData(_) => {
                    let message = match step {
                        Some(ClientStep::Data { message }) => message.clone(),
                        _ => MessageSummary::default(),
                    };
                    self.session.data_received(DataOutcome::Complete(message))
                }
                Action::AbortUpstream(reply) => {
                    self.upstream.close();
                    Action::Reply(reply)
                }
                Action::AuthChallenge(_) => {
                    let line = responses.pop_front().unwrap_or_else(|| "*".to_string());
                    self.session.auth_response(line.as_bytes())
                }
                Action::VerifyCredentials(attempt) => {
                    let check = self.credentials.check(&attempt);
                    self.session.credentials_checked(check)
                }
                Action::Close(reply) | Action::StartTls(reply) => {
                    // The client never asks for TLS; a 220 to STARTTLS
                    // would end this run like a close.
                    if !quitting {
                        current.reply = Some(reply);
                        current.closed = true;
                        finish(&mut run, step, std::mem::take(&mut current));
                    }
                    return run;
                }
                Action::Reply(reply) => {
                    if quitting {
                        return run;
                    }
                    let goes_on = step.is_none_or(|s| s.goes_on_after(&reply))
                        && (step.is_some() || reply.is_positive());
                    current.reply = Some(reply);
                    finish(&mut run, step, std::mem::take(&mut current));
                    step = if goes_on { next.next() } else { None };
                    match step {
                        Some(client_step) => {
                            responses = client_step.challenge_responses().into();
                            let line = client_step.command_line();
                            self.session.command(parse_command(line.as_bytes()))
                        }
                        None => {
                            quitting = true;
                            self.session.command(parse_command(b"QUIT"))
                        }
                    }
                }
            };
        }
    }
}

/// A chain's acceptance as one answer: the combined decision and offer.
fn combined(verdict: &crate::policy::ChainVerdict) -> PolicyAnswer {
    PolicyAnswer {
        decision: verdict.decision().clone(),
        offer: verdict.offer(),
        failure: None,
        elapsed: std::time::Duration::ZERO,
    }
}

/// File a finished exchange where it belongs.
fn finish(run: &mut OfflineRun, step: Option<&ClientStep>, exchange: Exchange) {
    match step {
        None => run.connection = exchange,
        Some(_) => run.steps.push(exchange),
    }
}

//! The SMTP session as a sans-IO state machine.
//!
//! [`Session`] takes events (a parsed command, a policy answer, an upstream
//! reply, the outcome of receiving a message) and returns the next
//! [`Action`] for its driver to perform. It never touches a socket, so it is
//! tested with plain values. Two drivers run it: the connection driver
//! (`connection`) for real clients, and `policy_test::offline`, which
//! `relaygate policy test` uses to play a case with a scripted client and
//! upstream.

mod ehlo;
pub mod sasl;

use crate::hook::{Decision, MessageSummary, Offer, PolicyContext, PolicyRequest};
use crate::smtp::address::AddressError;
use crate::smtp::data::DataProblem;
use crate::smtp::reply::catalogue;
use crate::smtp::{Command, CommandError, Param, Reply};
use sasl::{AuthAttempt, CredentialCheck, DecodeError, Mechanism, replies as auth_replies};

/// Limits applied per session.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// SIZE limit in bytes.
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Errors before the session is closed (every 4xx/5xx reply to a
    /// command counts, see [`Session::errors`]).
    pub max_errors: u32,
}

/// What the proxy can offer beyond the base extensions, whatever the policy
/// wants (AUTH needs a backend, STARTTLS a certificate, ...).
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    /// The upstream supports SMTPUTF8.
    pub smtputf8: bool,
    /// A credential backend is configured (`[auth]`).
    pub auth: bool,
    /// AUTH only under TLS (`[auth] require_tls`).
    pub auth_requires_tls: bool,
    /// A certificate is configured (`[tls]`) and the listener offers STARTTLS.
    pub starttls: bool,
    /// The listener requires AUTH (`[[listener]] auth = "required"`): AUTH
    /// is offered wherever `auth` and `auth_requires_tls` allow, whatever
    /// the policy's `extensions` answer, and MAIL before it gets 530.
    pub auth_required: bool,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this reply, then read the next command.
    Reply(Reply),
    /// Send this reply, then close the connection.
    Close(Reply),
    /// Ask the policy, then call [`Session::policy_answered`].
    Ask(PolicyRequest),
    /// Talk to the upstream, then call [`Session::upstream_answered`].
    Upstream(UpstreamStep),
    /// Send this (354) reply, receive the message while streaming it
    /// upstream, then call [`Session::data_received`].
    ReceiveData(Reply),
    /// Abandon the upstream transaction (close that connection so the
    /// partial message is discarded), then send this reply.
    AbortUpstream(Reply),
    /// Send this 334 challenge, read one line (with the command-line limits
    /// and deadline) and give it to [`Session::auth_response`].
    AuthChallenge(Reply),
    /// Check these credentials with the backend, then call
    /// [`Session::credentials_checked`].
    VerifyCredentials(AuthAttempt),
    /// Send this 220 reply, discard whatever the client sent after
    /// STARTTLS, run the TLS handshake, then call [`Session::tls_started`]
    /// (or end the connection if the handshake fails).
    StartTls(Reply),
}

/// A step of the upstream transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamStep {
    /// MAIL FROM (opening the connection first if needed).
    Mail {
        /// Reverse path.
        path: String,
        /// Parameters the client gave.
        params: Vec<Param>,
    },
    /// RCPT TO.
    Rcpt {
        /// Forward path.
        path: String,
    },
    /// DATA (expects 354).
    Data,
    /// The message is complete: send the end-of-data line.
    EndData,
}

/// Why the upstream could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamProblem {
    /// Unreachable, closed, timed out.
    Unavailable,
    /// Answered something that is not SMTP.
    Protocol,
}

/// How receiving a message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome {
    /// The whole message arrived clean and went upstream (but for the end line).
    Complete(MessageSummary),
    /// The message is refused for a problem in its data.
    Refused(DataProblem),
    /// The upstream failed while the message was streamed.
    UpstreamFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the greeting, waiting for the connect verdict.
    Connecting,
    /// The policy refused the session; only QUIT is accepted.
    Refused,
    /// Greeted; HELO/EHLO needed.
    Ready,
    /// HELO/EHLO done, no transaction.
    Idle,
    /// MAIL accepted.
    Transaction,
    /// Receiving or finishing a message.
    Data,
    /// Closed.
    Closed,
}

#[derive(Debug, Clone)]
enum Pending {
    None,
    Connect,
    Helo {
        name: String,
        extended: bool,
    },
    Extensions,
    MailPolicy {
        path: String,
        params: Vec<Param>,
    },
    MailUpstream {
        path: String,
        /// The MAIL gave SMTPUTF8.
        smtputf8: bool,
    },
    RcptPolicy {
        path: String,
    },
    RcptUpstream {
        path: String,
    },
    DataUpstream,
    DataPolicy,
    EndData,
    /// PLAIN without an initial response: waiting for it.
    AuthPlain,
    /// LOGIN: waiting for the user name.
    AuthLoginUser,
    /// LOGIN: waiting for the password of `user`.
    AuthLoginPassword {
        user: String,
    },
    /// Waiting for the backend's verdict on `user`'s credentials.
    AuthVerify {
        mechanism: Mechanism,
        user: String,
    },
    /// The backend accepted; waiting for the policy's `auth` hook.
    AuthPolicy {
        user: String,
    },
    /// 220 sent to STARTTLS; waiting for the handshake.
    StartTls,
}

/// One client's SMTP session.
pub struct Session {
    hostname: String,
    limits: SessionLimits,
    capabilities: Capabilities,
    context: PolicyContext,
    phase: Phase,
    pending: Pending,
    offer: Offer,
    advertised: Advertised,
    errors: u32,
    rcpt_attempts: usize,
    /// The transaction's MAIL gave SMTPUTF8, which covers its recipients.
    smtputf8: bool,
}

/// What the last EHLO reply offered of the extensions that need more than
/// the policy's word (a backend, a certificate, TLS first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Advertised {
    /// AUTH PLAIN LOGIN.
    pub auth: bool,
    /// STARTTLS.
    pub starttls: bool,
}

impl Session {
    /// A new session; call [`Session::start`] first.
    pub fn new(
        hostname: String,
        limits: SessionLimits,
        capabilities: Capabilities,
        context: PolicyContext,
    ) -> Self {
        Self {
            hostname,
            limits,
            capabilities,
            context,
            phase: Phase::Connecting,
            pending: Pending::None,
            offer: Offer::default(),
            advertised: Advertised::default(),
            errors: 0,
            rcpt_attempts: 0,
            smtputf8: false,
        }
    }

    /// What the policy is shown.
    pub fn context(&self) -> &PolicyContext {
        &self.context
    }

    /// The session has ended.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// A transaction is in progress (MAIL accepted, not finished).
    pub fn in_transaction(&self) -> bool {
        matches!(self.phase, Phase::Transaction | Phase::Data)
    }

    /// The first action: ask the policy about the connection.
    pub fn start(&mut self) -> Action {
        self.pending = Pending::Connect;
        Action::Ask(PolicyRequest::Connect)
    }

    /// The reply to give when the session must end now (timeout, shutdown).
    pub fn close_with(&mut self, reply: Reply) -> Action {
        self.phase = Phase::Closed;
        Action::Close(reply)
    }

    /// Errors made so far without delivering a message: every 4xx or 5xx
    /// reply to a command (syntax, sequence, policy refusals, the
    /// upstream's own refusals and failures), as Postfix's smtpd counts
    /// them, except the 452 for recipients over `max_recipients`, which is
    /// flow control that a correct client meets (Postfix counts it only
    /// far beyond the limit). A delivered message forgives them, as in
    /// Postfix. At `max_errors` the session ends with 421 4.7.0; the driver
    /// slows error replies down past its soft limit.
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// A command line arrived (parsed, or refused by the parser).
    pub fn command(&mut self, command: Result<Command, CommandError>) -> Action {
        let action = self.command_action(command);
        self.counted(action)
    }

    fn command_action(&mut self, command: Result<Command, CommandError>) -> Action {
        debug_assert!(
            matches!(self.pending, Pending::None),
            "command while {:?}",
            self.pending
        );
        let command = match command {
            Ok(command) => command,
            Err(CommandError::NeedsSmtpUtf8(command)) => match *command {
                // RFC 6531: SMTPUTF8 on MAIL makes the whole transaction
                // SMTPUTF8, its RCPTs included.
                rcpt @ Command::Rcpt { .. }
                    if self.smtputf8 && self.phase == Phase::Transaction =>
                {
                    rcpt
                }
                _ => return self.error(needs_smtputf8()),
            },
            Err(error) => return self.error(parse_error_reply(&error)),
        };
        if self.phase == Phase::Refused {
            return match command {
                Command::Quit => self.quit(),
                _ => self.error(catalogue::session_refused()),
            };
        }
        match command {
            Command::Helo(name) => self.ask(
                Pending::Helo {
                    name: name.clone(),
                    extended: false,
                },
                PolicyRequest::Helo {
                    name,
                    extended: false,
                },
            ),
            Command::Ehlo(name) => self.ask(
                Pending::Helo {
                    name: name.clone(),
                    extended: true,
                },
                PolicyRequest::Helo {
                    name,
                    extended: true,
                },
            ),
            Command::Mail { path, params } => self.mail(path, params),
            Command::Rcpt { path, params } => self.rcpt(path, params),
            Command::Data => self.data(),
            Command::Rset => {
                self.reset_transaction();
                Action::Reply(catalogue::ok())
            }
            Command::Noop => Action::Reply(catalogue::ok()),
            Command::Quit => self.quit(),
            Command::Vrfy => Action::Reply(catalogue::vrfy()),
            Command::Expn => Action::Reply(catalogue::expn()),
            Command::Help => Action::Reply(catalogue::help()),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial.as_deref()),
            Command::StartTls => self.starttls(),
            Command::Bdat => self.error(Reply::new(502, "5.5.1 Error: command not implemented")),
        }
    }

    /// A line that was too long to be a command (or an AUTH response,
    /// which then ends the exchange).
    pub fn line_too_long(&mut self) -> Action {
        self.pending = Pending::None;
        let action = self.error(catalogue::line_too_long());
        self.counted(action)
    }

    /// The client's line in answer to an [`Action::AuthChallenge`].
    pub fn auth_response(&mut self, line: &[u8]) -> Action {
        let action = self.auth_response_action(line);
        self.counted(action)
    }

    fn auth_response_action(&mut self, line: &[u8]) -> Action {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        if line == b"*" {
            return self.error(auth_replies::cancelled());
        }
        match pending {
            Pending::AuthPlain => self.plain(line),
            Pending::AuthLoginUser => match sasl::decode_login_user(line) {
                Ok(user) => self.challenge(
                    Pending::AuthLoginPassword { user },
                    auth_replies::login_password_challenge(),
                ),
                Err(error) => self.auth_decode_failed(error),
            },
            Pending::AuthLoginPassword { user } => match sasl::decode_login_password(line) {
                Ok(password) => self.verify(AuthAttempt {
                    mechanism: Mechanism::Login,
                    user,
                    password,
                }),
                Err(error) => self.auth_decode_failed(error),
            },
            other => unreachable!("AUTH response while {other:?}"),
        }
    }

    /// The backend's verdict on the credentials of [`Action::VerifyCredentials`].
    pub fn credentials_checked(&mut self, check: CredentialCheck) -> Action {
        let action = self.credentials_action(check);
        self.counted(action)
    }

    fn credentials_action(&mut self, check: CredentialCheck) -> Action {
        let Pending::AuthVerify { mechanism, user } =
            std::mem::replace(&mut self.pending, Pending::None)
        else {
            unreachable!("credentials checked while {:?}", self.pending)
        };
        match check {
            CredentialCheck::Accepted => self.ask(
                Pending::AuthPolicy { user: user.clone() },
                PolicyRequest::Auth {
                    mechanism: mechanism.name().to_string(),
                    identity: user,
                },
            ),
            CredentialCheck::Rejected => self.error(auth_replies::invalid_credentials()),
            CredentialCheck::Throttled | CredentialCheck::Unavailable => {
                self.error(auth_replies::temporary_failure())
            }
        }
    }

    /// The TLS handshake after [`Action::StartTls`] succeeded: everything
    /// learnt from the client in clear is forgotten (RFC 3207 4.2), so it
    /// must greet again with EHLO; the driver then reads the next command.
    pub fn tls_started(&mut self) {
        debug_assert!(matches!(self.pending, Pending::StartTls));
        self.pending = Pending::None;
        self.reset_transaction();
        self.context.tls = true;
        self.context.helo = None;
        self.context.esmtp = false;
        self.context.auth_user = None;
        self.offer = Offer::default();
        self.advertised = Advertised::default();
        self.phase = Phase::Ready;
    }

    /// The policy answered the pending question.
    pub fn policy_answered(&mut self, decision: Decision, offer: Offer) -> Action {
        // The greeting answers no command: a refused connection's 554 is
        // not an error of the client's (the commands it then sends are).
        let greeting = matches!(self.pending, Pending::Connect);
        let action = self.policy_action(decision, offer);
        if greeting {
            action
        } else {
            self.counted(action)
        }
    }

    fn policy_action(&mut self, decision: Decision, offer: Offer) -> Action {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::Connect => match decision {
                Decision::Accept => {
                    self.phase = Phase::Ready;
                    Action::Reply(Reply::new(220, format!("{} ESMTP ready", self.hostname)))
                }
                Decision::Reject(reply) => {
                    self.phase = Phase::Refused;
                    Action::Reply(with_code(reply, 554))
                }
                Decision::Tempfail(reply) => self.close_with(with_code(reply, 421)),
            },
            Pending::Helo { name, extended } => match decision {
                Decision::Accept => {
                    self.reset_transaction();
                    self.context.helo = Some(name);
                    self.context.esmtp = extended;
                    self.phase = Phase::Idle;
                    if extended {
                        self.ask(Pending::Extensions, PolicyRequest::Extensions)
                    } else {
                        Action::Reply(catalogue::helo(&self.hostname))
                    }
                }
                refused => self.refused(refused),
            },
            Pending::Extensions => {
                self.offer = offer;
                self.advertised = Advertised {
                    auth: (offer.auth || self.capabilities.auth_required)
                        && self.capabilities.auth
                        && (self.context.tls || !self.capabilities.auth_requires_tls),
                    starttls: offer.starttls && self.capabilities.starttls && !self.context.tls,
                };
                Action::Reply(ehlo::reply(
                    &self.hostname,
                    &self.limits,
                    self.capabilities,
                    offer,
                    self.advertised,
                ))
            }
            Pending::AuthPolicy { user } => match decision {
                Decision::Accept => {
                    self.context.auth_user = Some(user);
                    Action::Reply(auth_replies::success())
                }
                Decision::Reject(reply) => self.error(with_code(reply, 535)),
                Decision::Tempfail(reply) => self.error(reply),
            },
            Pending::MailPolicy { path, params } => match decision {
                Decision::Accept => {
                    self.pending = Pending::MailUpstream {
                        path: path.clone(),
                        smtputf8: crate::smtp::command::has_smtputf8(&params),
                    };
                    Action::Upstream(UpstreamStep::Mail { path, params })
                }
                refused => self.refused(refused),
            },
            Pending::RcptPolicy { path } => match decision {
                Decision::Accept => {
                    self.pending = Pending::RcptUpstream { path: path.clone() };
                    Action::Upstream(UpstreamStep::Rcpt { path })
                }
                refused => self.refused(refused),
            },
            Pending::DataPolicy => match decision {
                Decision::Accept => {
                    self.pending = Pending::EndData;
                    Action::Upstream(UpstreamStep::EndData)
                }
                Decision::Reject(reply) | Decision::Tempfail(reply) => {
                    self.reset_transaction();
                    Action::AbortUpstream(reply)
                }
            },
            other => unreachable!("policy answer while {other:?}"),
        }
    }

    /// The upstream answered the pending step (or could not).
    pub fn upstream_answered(&mut self, reply: Result<Reply, UpstreamProblem>) -> Action {
        let delivered = matches!(self.pending, Pending::EndData)
            && matches!(&reply, Ok(reply) if reply.is_positive());
        let action = self.upstream_action(reply);
        if delivered {
            // Postfix forgives a client's errors once it delivers a message.
            self.errors = 0;
        }
        self.counted(action)
    }

    fn upstream_action(&mut self, reply: Result<Reply, UpstreamProblem>) -> Action {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        let reply = match reply {
            Ok(reply) => reply,
            Err(problem) => {
                self.reset_transaction();
                return Action::AbortUpstream(match problem {
                    UpstreamProblem::Unavailable => catalogue::upstream_unavailable(),
                    UpstreamProblem::Protocol => catalogue::upstream_protocol_error(),
                });
            }
        };
        match pending {
            Pending::MailUpstream { path, smtputf8 } => {
                if reply.is_positive() {
                    self.phase = Phase::Transaction;
                    self.context.sender = Some(path);
                    self.context.recipients.clear();
                    self.rcpt_attempts = 0;
                    self.smtputf8 = smtputf8;
                }
                Action::Reply(reply)
            }
            Pending::RcptUpstream { path } => {
                if reply.is_positive() {
                    self.context.recipients.push(path);
                }
                Action::Reply(reply)
            }
            Pending::DataUpstream => {
                if reply.is_intermediate() {
                    self.phase = Phase::Data;
                    Action::ReceiveData(catalogue::start_data())
                } else {
                    Action::Reply(reply)
                }
            }
            Pending::EndData => {
                self.reset_transaction();
                Action::Reply(reply)
            }
            other => unreachable!("upstream reply while {other:?}"),
        }
    }

    /// Receiving the message ended.
    pub fn data_received(&mut self, outcome: DataOutcome) -> Action {
        let action = self.data_action(outcome);
        self.counted(action)
    }

    fn data_action(&mut self, outcome: DataOutcome) -> Action {
        match outcome {
            DataOutcome::Complete(summary) => {
                self.pending = Pending::DataPolicy;
                Action::Ask(PolicyRequest::Data(summary))
            }
            DataOutcome::Refused(problem) => {
                self.reset_transaction();
                Action::AbortUpstream(match problem {
                    DataProblem::BareLineEnding => catalogue::bare_line_ending(),
                    DataProblem::Nul => catalogue::data_nul(),
                    DataProblem::LineTooLong => catalogue::data_line_too_long(),
                    DataProblem::TooBig => catalogue::message_too_big(),
                })
            }
            DataOutcome::UpstreamFailed => {
                self.reset_transaction();
                Action::AbortUpstream(catalogue::upstream_unavailable())
            }
        }
    }

    fn ask(&mut self, pending: Pending, request: PolicyRequest) -> Action {
        self.pending = pending;
        Action::Ask(request)
    }

    fn mail(&mut self, path: String, params: Vec<Param>) -> Action {
        match self.phase {
            Phase::Ready => return self.error(catalogue::bad_sequence("send HELO/EHLO first")),
            Phase::Transaction => {
                return self.error(catalogue::bad_sequence("nested MAIL command"));
            }
            _ => {}
        }
        if self.capabilities.auth_required && self.context.auth_user.is_none() {
            return self.error(auth_replies::authentication_required());
        }
        if let Some(param) = params.first()
            && !self.context.esmtp
        {
            // Parameters are ESMTP: a client that said HELO was offered none.
            return self.error(catalogue::unsupported_parameter(&param.name));
        }
        for param in &params {
            let value = param.value.as_deref();
            match (param.name.as_str(), value) {
                ("SIZE", Some(v)) => match v.parse::<u64>() {
                    _ if !v.bytes().all(|b| b.is_ascii_digit()) => {
                        return self.error(catalogue::syntax("SIZE=<number>"));
                    }
                    Ok(size) if size > self.limits.max_message_size => {
                        return self.error(catalogue::message_too_big());
                    }
                    Ok(_) => {}
                    Err(_) => return self.error(catalogue::syntax("SIZE=<number>")),
                },
                ("BODY", Some(v))
                    if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
                ("BODY", _) => return self.error(catalogue::syntax("BODY=7BIT or BODY=8BITMIME")),
                ("SMTPUTF8", None) if self.capabilities.smtputf8 && self.offer.smtputf8 => {}
                _ => return self.error(catalogue::unsupported_parameter(&param.name)),
            }
        }
        self.ask(
            Pending::MailPolicy {
                path: path.clone(),
                params: params.clone(),
            },
            PolicyRequest::MailFrom {
                sender: path,
                params,
            },
        )
    }

    fn rcpt(&mut self, path: String, params: Vec<Param>) -> Action {
        if self.phase != Phase::Transaction {
            return self.error(catalogue::bad_sequence("need MAIL command"));
        }
        if let Some(param) = params.first() {
            return self.error(catalogue::unsupported_parameter(&param.name));
        }
        self.rcpt_attempts += 1;
        if self.context.recipients.len() >= self.limits.max_recipients {
            return Action::Reply(catalogue::too_many_recipients());
        }
        self.ask(
            Pending::RcptPolicy { path: path.clone() },
            PolicyRequest::RcptTo {
                recipient: path,
                params,
            },
        )
    }

    fn data(&mut self) -> Action {
        if self.phase != Phase::Transaction {
            return self.error(catalogue::bad_sequence("need MAIL command"));
        }
        if self.context.recipients.is_empty() {
            return if self.rcpt_attempts > 0 {
                Action::Reply(catalogue::no_valid_recipients())
            } else {
                self.error(catalogue::bad_sequence("need RCPT command"))
            };
        }
        self.pending = Pending::DataUpstream;
        Action::Upstream(UpstreamStep::Data)
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Action {
        if self.context.auth_user.is_some() {
            return self.error(auth_replies::bad_sequence("already authenticated"));
        }
        if self.phase == Phase::Ready || !self.context.esmtp {
            return self.error(auth_replies::bad_sequence("send EHLO first"));
        }
        if self.in_transaction() {
            return self.error(auth_replies::bad_sequence(
                "AUTH not allowed during a mail transaction",
            ));
        }
        if !self.advertised.auth {
            let wanted =
                (self.offer.auth || self.capabilities.auth_required) && self.capabilities.auth;
            return if wanted && self.capabilities.auth_requires_tls && !self.context.tls {
                self.error(auth_replies::encryption_required())
            } else {
                self.error(auth_replies::bad_sequence("authentication not enabled"))
            };
        }
        let Some(mechanism) = Mechanism::parse(mechanism) else {
            return self.error(auth_replies::unknown_mechanism());
        };
        match (mechanism, initial) {
            (Mechanism::Plain, Some(response)) => self.plain(response.as_bytes()),
            (Mechanism::Plain, None) => {
                self.challenge(Pending::AuthPlain, auth_replies::plain_challenge())
            }
            (Mechanism::Login, None) => {
                self.challenge(Pending::AuthLoginUser, auth_replies::login_user_challenge())
            }
            (Mechanism::Login, Some(response)) => {
                self.pending = Pending::AuthLoginUser;
                self.auth_response_action(response.as_bytes())
            }
        }
    }

    fn plain(&mut self, response: &[u8]) -> Action {
        if response == b"*" {
            return self.error(auth_replies::cancelled());
        }
        match sasl::decode_plain(response) {
            Ok(attempt) => self.verify(attempt),
            Err(error) => self.auth_decode_failed(error),
        }
    }

    fn challenge(&mut self, pending: Pending, reply: Reply) -> Action {
        self.pending = pending;
        Action::AuthChallenge(reply)
    }

    fn verify(&mut self, attempt: AuthAttempt) -> Action {
        if attempt.user.is_empty() || attempt.password.is_empty() {
            return self.error(auth_replies::invalid_credentials());
        }
        self.pending = Pending::AuthVerify {
            mechanism: attempt.mechanism,
            user: attempt.user.clone(),
        };
        Action::VerifyCredentials(attempt)
    }

    fn auth_decode_failed(&mut self, error: DecodeError) -> Action {
        match error {
            DecodeError::Malformed => self.error(auth_replies::malformed()),
            DecodeError::ForeignAuthzid => self.error(auth_replies::invalid_credentials()),
        }
    }

    fn starttls(&mut self) -> Action {
        if self.context.tls {
            return self.error(auth_replies::bad_sequence("TLS already active"));
        }
        if !self.capabilities.starttls {
            return self.error(Reply::new(502, "5.5.1 Error: command not implemented"));
        }
        if self.phase == Phase::Ready || !self.context.esmtp {
            return self.error(auth_replies::bad_sequence("send EHLO first"));
        }
        if !self.advertised.starttls {
            return self.error(Reply::new(454, "4.7.0 TLS not available"));
        }
        if self.in_transaction() {
            return self.error(auth_replies::bad_sequence(
                "STARTTLS not allowed during a mail transaction",
            ));
        }
        self.pending = Pending::StartTls;
        Action::StartTls(Reply::new(220, "2.0.0 Ready to start TLS"))
    }

    fn quit(&mut self) -> Action {
        self.close_with(catalogue::closing(&self.hostname))
    }

    /// A refused policy decision becomes the reply.
    fn refused(&mut self, decision: Decision) -> Action {
        match decision {
            Decision::Accept => unreachable!("only refusals come here"),
            Decision::Reject(reply) | Decision::Tempfail(reply) => Action::Reply(reply),
        }
    }

    /// An error reply (counted like every other 4xx/5xx by [`Self::counted`]).
    fn error(&mut self, reply: Reply) -> Action {
        Action::Reply(reply)
    }

    /// Count the reply the client is about to get if it is an error (see
    /// [`Session::errors`]); the one that reaches `max_errors` becomes
    /// 421 4.7.0 and the session ends.
    fn counted(&mut self, action: Action) -> Action {
        let (Action::Reply(reply) | Action::AbortUpstream(reply)) = &action else {
            return action;
        };
        if reply.code() < 400 || *reply == catalogue::too_many_recipients() {
            return action;
        }
        self.errors += 1;
        if self.errors >= self.limits.max_errors {
            // The upstream transaction goes with the session (a message
            // half sent upstream is dropped: `Upstream::quit` sends no QUIT
            // inside one).
            self.reset_transaction();
            return self.close_with(catalogue::too_many_errors(&self.hostname));
        }
        action
    }

    fn reset_transaction(&mut self) {
        if matches!(self.phase, Phase::Transaction | Phase::Data) {
            self.phase = Phase::Idle;
        }
        self.context.sender = None;
        self.context.recipients.clear();
        self.rcpt_attempts = 0;
        self.smtputf8 = false;
    }
}

fn parse_error_reply(error: &CommandError) -> Reply {
    match error {
        CommandError::Unknown => catalogue::unknown_command(),
        CommandError::BadCharacters => catalogue::bad_characters(),
        CommandError::Syntax(usage) => catalogue::syntax(usage),
        CommandError::Address(AddressError::NeedsSmtpUtf8) | CommandError::NeedsSmtpUtf8(_) => {
            needs_smtputf8()
        }
        CommandError::Address(AddressError::TooLong) => Reply::new(501, "5.1.3 Address too long"),
        CommandError::Address(_) => catalogue::bad_address("mailbox"),
    }
}

/// A non-ASCII address outside an SMTPUTF8 transaction (RFC 6531, RFC 6533
/// 5.6.7).
fn needs_smtputf8() -> Reply {
    Reply::new(553, "5.6.7 Non-ASCII address requires SMTPUTF8")
}

/// Keep a policy's text but force the code a stage allows (554 or 421 at connect).
fn with_code(reply: Reply, code: u16) -> Reply {
    Reply::multiline(code, reply.lines().to_vec())
}

#[cfg(test)]
mod tests;

//! The SMTP session as a sans-IO state machine.
//!
//! [`Session`] takes events (a parsed command, a policy answer, an upstream
//! reply, the outcome of receiving a message) and returns the next
//! [`Action`] for its driver to perform. It never touches a socket, so it is
//! tested with plain values and reused offline by `relaygate policy test`.

mod ehlo;

use crate::connection::DataProblem;
use crate::policy::{Decision, MessageSummary, Offer, PolicyContext, PolicyRequest};
use crate::smtp::address::AddressError;
use crate::smtp::reply::catalogue;
use crate::smtp::{Command, CommandError, Param, Reply};

/// Limits applied per session.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// SIZE limit in bytes.
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Errors before the session is closed.
    pub max_errors: u32,
}

/// What the proxy can offer beyond the base extensions, whatever the policy
/// wants (AUTH needs a backend, STARTTLS a certificate, ...).
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    /// The upstream supports SMTPUTF8.
    pub smtputf8: bool,
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
    Helo { name: String, extended: bool },
    Extensions,
    MailPolicy { path: String, params: Vec<Param> },
    MailUpstream { path: String },
    RcptPolicy { path: String },
    RcptUpstream { path: String },
    DataUpstream,
    DataPolicy,
    EndData,
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
    errors: u32,
    rcpt_attempts: usize,
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
            errors: 0,
            rcpt_attempts: 0,
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

    /// A command line arrived (parsed, or refused by the parser).
    pub fn command(&mut self, command: Result<Command, CommandError>) -> Action {
        debug_assert!(
            matches!(self.pending, Pending::None),
            "command while {:?}",
            self.pending
        );
        let command = match command {
            Ok(command) => command,
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
            Command::StartTls | Command::Auth { .. } | Command::Bdat => {
                self.error(Reply::new(502, "5.5.1 Error: command not implemented"))
            }
        }
    }

    /// A line that was too long to be a command.
    pub fn line_too_long(&mut self) -> Action {
        self.error(catalogue::line_too_long())
    }

    /// The policy answered the pending question.
    pub fn policy_answered(&mut self, decision: Decision, offer: Offer) -> Action {
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
                Action::Reply(ehlo::reply(
                    &self.hostname,
                    &self.limits,
                    self.capabilities,
                    offer,
                ))
            }
            Pending::MailPolicy { path, params } => match decision {
                Decision::Accept => {
                    self.pending = Pending::MailUpstream { path: path.clone() };
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
            Pending::MailUpstream { path } => {
                if reply.is_positive() {
                    self.phase = Phase::Transaction;
                    self.context.sender = Some(path);
                    self.context.recipients.clear();
                    self.rcpt_attempts = 0;
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

    /// Count an error; too many end the session.
    fn error(&mut self, reply: Reply) -> Action {
        self.errors += 1;
        if self.errors >= self.limits.max_errors {
            return self.close_with(catalogue::too_many_errors(&self.hostname));
        }
        Action::Reply(reply)
    }

    fn reset_transaction(&mut self) {
        if matches!(self.phase, Phase::Transaction | Phase::Data) {
            self.phase = Phase::Idle;
        }
        self.context.sender = None;
        self.context.recipients.clear();
        self.rcpt_attempts = 0;
    }
}

fn parse_error_reply(error: &CommandError) -> Reply {
    match error {
        CommandError::Unknown => catalogue::unknown_command(),
        CommandError::BadCharacters => catalogue::bad_characters(),
        CommandError::Syntax(usage) => catalogue::syntax(usage),
        CommandError::Address(AddressError::NeedsSmtpUtf8) => {
            Reply::new(553, "5.6.7 Non-ASCII address requires SMTPUTF8")
        }
        CommandError::Address(AddressError::TooLong) => Reply::new(501, "5.1.3 Address too long"),
        CommandError::Address(_) => catalogue::bad_address("mailbox"),
    }
}

/// Keep a policy's text but force the code a stage allows (554 or 421 at connect).
fn with_code(reply: Reply, code: u16) -> Reply {
    Reply::multiline(code, reply.lines().to_vec())
}

#[cfg(test)]
mod tests;

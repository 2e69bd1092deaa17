//! The sans-IO session driven by a fuzz-chosen sequence of events.
//!
//! The driver here does what `connection::Driver` does: it always feeds the event
//! the last action asks for (a policy answer after `Ask`, an upstream answer
//! after `Upstream`, a data outcome after `ReceiveData`, the next command
//! line after `Reply`/`AbortUpstream`, nothing after `Close`). The policy,
//! the upstream and the client are played by the fuzz input, within what
//! the real ones can produce: validated policy verdicts (reject 5xx,
//! tempfail 4xx), upstream replies 200-599 (a 421 is a closed upstream), and
//! command lines through `parse_command`.
//!
//! Checked after every step: reply codes are 200-599; `Close` closes; the
//! recipients stay within `max_recipients`; every upstream step follows the
//! policy's and the upstream's consent (MAIL after an accepted HELO/EHLO
//! and MAIL verdict, RCPT inside an upstream transaction, DATA with an
//! accepted recipient, the end of data after the data verdict); and the
//! client's answer to a message is 2xx only when it is the upstream's own
//! 2xx answer to the end of data.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use relaygate::hook::{
    Decision, ListenerIdentity, MessageSummary, Offer, PolicyContext, PolicyRequest,
};
use relaygate::session::sasl::CredentialCheck;
use relaygate::session::{
    Action, Capabilities, DataOutcome, Session, SessionLimits, UpstreamProblem, UpstreamStep,
};
use relaygate::smtp::data::DataProblem;
use relaygate::smtp::reply::catalogue;
use relaygate::smtp::{Command, CommandError, Reply, parse_command};

/// More steps than any useful session needs; keeps every run bounded.
const MAX_STEPS: usize = 2000;

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

/// What the last step fed the session.
#[derive(Debug, Clone, PartialEq)]
enum Fed {
    Start,
    Command(Option<std::result::Result<Command, CommandError>>),
    Policy(Decision),
    Upstream(std::result::Result<u16, UpstreamProblem>),
    Data(&'static str),
    Close,
    /// A line answering an AUTH challenge.
    AuthResponse,
    /// The credential backend's verdict.
    Credentials(CredentialCheck),
    /// The TLS handshake after STARTTLS succeeded.
    TlsStarted,
}

fn run(u: &mut Unstructured) -> Result<()> {
    let limits = SessionLimits {
        max_message_size: *u.choose(&[0, 10, 1000, 35_882_577, u64::MAX])?,
        max_recipients: u.int_in_range(1..=4)?,
        max_errors: u.int_in_range(1..=8)?,
    };
    let capabilities = Capabilities {
        smtputf8: u.arbitrary()?,
        auth: u.arbitrary()?,
        auth_requires_tls: u.arbitrary()?,
        starttls: u.arbitrary()?,
        auth_required: u.arbitrary()?,
    };
    let mut session = Session::new(
        "mx.fuzz.test".into(),
        limits.clone(),
        capabilities,
        context(),
    );
    let mut watch = Watch::new(limits, capabilities);
    let mut action = session.start();
    let mut fed = Fed::Start;
    for _ in 0..MAX_STEPS {
        if trace() {
            eprintln!("fed {fed:?}\n  -> {action:?}");
        }
        watch.check(&session, &action, &fed);
        (action, fed) = match action {
            Action::Ask(request) => {
                let (decision, offer) = policy_answer(u, &request)?;
                watch.asked(&request, &decision, offer);
                let next = session.policy_answered(decision.clone(), offer);
                (next, Fed::Policy(decision))
            }
            Action::Upstream(step) => {
                let answer = upstream_answer(u)?;
                watch.upstream(&step, &answer);
                let code = answer.as_ref().map(Reply::code).map_err(Clone::clone);
                (session.upstream_answered(answer), Fed::Upstream(code))
            }
            Action::ReceiveData(_) => match u.int_in_range(0..=9)? {
                // The client vanished mid-message: the driver stops.
                0 => return Ok(()),
                1 => {
                    let next = session.close_with(catalogue::timeout("mx.fuzz.test"));
                    (next, Fed::Close)
                }
                2 => (
                    session.data_received(DataOutcome::UpstreamFailed),
                    Fed::Data("upstream failed"),
                ),
                3 | 4 => {
                    let problem = *u.choose(&[
                        DataProblem::BareLineEnding,
                        DataProblem::Nul,
                        DataProblem::LineTooLong,
                        DataProblem::TooBig,
                    ])?;
                    (
                        session.data_received(DataOutcome::Refused(problem)),
                        Fed::Data("refused"),
                    )
                }
                _ => {
                    let summary = MessageSummary {
                        size: u.arbitrary()?,
                        headers: vec![("Subject".into(), "fuzz".into())],
                        headers_truncated: u.arbitrary()?,
                    };
                    watch.message_complete();
                    (
                        session.data_received(DataOutcome::Complete(summary)),
                        Fed::Data("complete"),
                    )
                }
            },
            Action::Reply(_) | Action::AbortUpstream(_) => {
                if u.is_empty() {
                    return Ok(());
                }
                client_event(u, &mut session)?
            }
            Action::Close(_) => return Ok(()),
            Action::AuthChallenge(_) => match u.int_in_range(0..=7)? {
                0 => (session.line_too_long(), Fed::Command(None)),
                1 => {
                    let next = session.close_with(catalogue::timeout("mx.fuzz.test"));
                    (next, Fed::Close)
                }
                _ => {
                    let line: Vec<u8> = match u.int_in_range(0..=5)? {
                        0 => b"*".to_vec(),
                        1 => b"=".to_vec(),
                        2 => b"YWxpY2U=".to_vec(),
                        3 => b"AGFsaWNlAHB3".to_vec(),
                        _ => {
                            let len = u.int_in_range(0..=40)?;
                            u.bytes(len)?.to_vec()
                        }
                    };
                    (session.auth_response(&line), Fed::AuthResponse)
                }
            },
            Action::VerifyCredentials(_) => {
                let check = *u.choose(&[
                    CredentialCheck::Accepted,
                    CredentialCheck::Rejected,
                    CredentialCheck::Throttled,
                    CredentialCheck::Unavailable,
                ])?;
                (session.credentials_checked(check), Fed::Credentials(check))
            }
            Action::StartTls(_) => {
                // A failed handshake ends the connection.
                if u.ratio(1, 4)? {
                    return Ok(());
                }
                session.tls_started();
                watch.tls_started();
                let (next, _) = client_event(u, &mut session)?;
                (next, Fed::TlsStarted)
            }
        };
    }
    Ok(())
}

/// `RELAYGATE_FUZZ_TRACE=1` prints each event and action (to read a
/// reproducer).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("RELAYGATE_FUZZ_TRACE").is_some())
}

fn context() -> PolicyContext {
    PolicyContext::connected(
        1,
        ListenerIdentity::new("smtp", "relay.test"),
        "192.0.2.1:40000".parse().expect("address"),
        "192.0.2.254:25".parse().expect("address"),
        None,
    )
}

/// The next thing the client does: a command line, an over-long line, or
/// the driver closing the session (timeout, shutdown).
fn client_event(u: &mut Unstructured, session: &mut Session) -> Result<(Action, Fed)> {
    let line: Vec<u8> = match u.int_in_range(0..=31)? {
        0 => return Ok((session.line_too_long(), Fed::Command(None))),
        1 => {
            let reply = *u.choose(&[
                catalogue::timeout as fn(&str) -> Reply,
                catalogue::shutting_down,
            ])?;
            return Ok((session.close_with(reply("mx.fuzz.test")), Fed::Close));
        }
        2..=4 => {
            // Raw bytes: whatever the parser makes of them.
            let len = u.int_in_range(0..=80)?;
            u.bytes(len)?.to_vec()
        }
        5 | 6 => format!("EHLO {}", word(u)?).into_bytes(),
        7 => format!("HELO {}", word(u)?).into_bytes(),
        8..=11 => {
            let sender = *u.choose(&["<a@x.test>", "<>", "b@x.test", "<j\u{fc}rgen@x.test>"])?;
            let mut line = format!("MAIL FROM:{sender}");
            for _ in 0..u.int_in_range(0..=3)? {
                line.push(' ');
                line.push_str(&mail_param(u)?);
            }
            line.into_bytes()
        }
        12..=17 => {
            let n: u8 = u.int_in_range(0..=7)?;
            let mut line = match u.int_in_range(0..=5)? {
                0 => "RCPT TO:<postmaster>".to_string(),
                1 => "RCPT TO:<>".to_string(),
                _ => format!("RCPT TO:<r{n}@y.test>"),
            };
            if u.ratio(1, 8)? {
                line.push_str(" NOTIFY=NEVER");
            }
            line.into_bytes()
        }
        18..=21 => b"DATA".to_vec(),
        22 | 23 => b"RSET".to_vec(),
        24 => b"QUIT".to_vec(),
        25 => b"NOOP".to_vec(),
        26 => b"VRFY root".to_vec(),
        27 => b"EXPN staff".to_vec(),
        28 => b"HELP".to_vec(),
        29 => b"STARTTLS".to_vec(),
        30 => u
            .choose(&[
                &b"AUTH PLAIN AGFAYg=="[..],
                b"AUTH PLAIN",
                b"AUTH LOGIN",
                b"AUTH LOGIN YWxpY2U=",
                b"AUTH CRAM-MD5",
            ])?
            .to_vec(),
        _ => b"BDAT 10 LAST".to_vec(),
    };
    let parsed = parse_command(&line);
    Ok((session.command(parsed.clone()), Fed::Command(Some(parsed))))
}

fn word(u: &mut Unstructured) -> Result<String> {
    Ok(u.choose(&["client.test", "[192.0.2.1]", "x", ""])?
        .to_string())
}

fn mail_param(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=7)? {
        0 => format!("SIZE={}", u.arbitrary::<u32>()?),
        1 => format!("SIZE={}", u.arbitrary::<u64>()?),
        2 => "SIZE=abc".to_string(),
        3 => "BODY=8BITMIME".to_string(),
        4 => "body=7bit".to_string(),
        5 => "BODY=BINARYMIME".to_string(),
        6 => "SMTPUTF8".to_string(),
        _ => "RET=FULL".to_string(),
    })
}

/// A verdict the policy host can hand over: validated codes only.
fn policy_answer(u: &mut Unstructured, request: &PolicyRequest) -> Result<(Decision, Offer)> {
    let offer = Offer {
        pipelining: u.arbitrary()?,
        auth: u.arbitrary()?,
        starttls: u.arbitrary()?,
        smtputf8: u.arbitrary()?,
        chunking: u.arbitrary()?,
    };
    if matches!(request, PolicyRequest::Extensions) {
        return Ok((Decision::Accept, offer));
    }
    let decision = match u.int_in_range(0..=7)? {
        0 => Decision::Reject(Reply::new(u.int_in_range(500..=599)?, "5.7.1 no")),
        1 => Decision::Tempfail(Reply::new(u.int_in_range(400..=499)?, "4.7.1 later")),
        2 => Decision::Tempfail(catalogue::policy_failure()),
        _ => Decision::Accept,
    };
    Ok((decision, offer))
}

/// What the upstream driver can report: a reply 200-599 (the reply reader
/// refuses other codes; 421 counts as a closed connection) or a failure.
fn upstream_answer(u: &mut Unstructured) -> Result<std::result::Result<Reply, UpstreamProblem>> {
    let code = match u.int_in_range(0..=15)? {
        0 => return Ok(Err(UpstreamProblem::Unavailable)),
        1 => return Ok(Err(UpstreamProblem::Protocol)),
        2 => u.int_in_range(200..=599)?,
        3 => 354,
        4 => 452,
        5 => 550,
        6 => 451,
        _ => 250,
    };
    if code == 421 {
        return Ok(Err(UpstreamProblem::Unavailable));
    }
    let lines = (0..u.int_in_range(0..=2)?)
        .map(|i| format!("line {i}"))
        .collect();
    Ok(Ok(Reply::multiline(code, lines)))
}

/// What the fuzz driver has seen, to check each action against.
struct Watch {
    limits: SessionLimits,
    capabilities: Capabilities,
    /// HELO/EHLO accepted by the policy at least once.
    greeted: bool,
    /// The policy refused the connection.
    refused: bool,
    /// SMTPUTF8 in the last EHLO offer.
    offer_smtputf8: bool,
    /// The last policy question and whether it was accepted.
    last_ask: Option<(PolicyRequest, bool)>,
    /// The last upstream step and the code it got.
    last_upstream: Option<(UpstreamStep, Option<u16>)>,
    /// Recipients the policy and the upstream both accepted.
    accepted_rcpts: Vec<String>,
    /// A complete message is waiting for its verdict; and the upstream's
    /// answer to its end, once given.
    message: Option<Option<Reply>>,
}

impl Watch {
    fn new(limits: SessionLimits, capabilities: Capabilities) -> Self {
        Self {
            limits,
            capabilities,
            greeted: false,
            refused: false,
            // Before any EHLO the session holds the default offer.
            offer_smtputf8: Offer::default().smtputf8,
            last_ask: None,
            last_upstream: None,
            accepted_rcpts: Vec::new(),
            message: None,
        }
    }

    fn asked(&mut self, request: &PolicyRequest, decision: &Decision, offer: Offer) {
        let accepted = matches!(decision, Decision::Accept);
        match request {
            PolicyRequest::Connect => self.refused = matches!(decision, Decision::Reject(_)),
            PolicyRequest::Helo { .. } => self.greeted |= accepted,
            PolicyRequest::Extensions => self.offer_smtputf8 = offer.smtputf8,
            _ => {}
        }
        self.last_ask = Some((request.clone(), accepted));
    }

    fn upstream(
        &mut self,
        step: &UpstreamStep,
        answer: &std::result::Result<Reply, UpstreamProblem>,
    ) {
        let code = answer.as_ref().ok().map(Reply::code);
        if let (UpstreamStep::Rcpt { path }, Some(200..=299)) = (step, code) {
            self.accepted_rcpts.push(path.clone());
        }
        if let (UpstreamStep::EndData, Ok(reply)) = (step, answer)
            && self.message.is_some()
        {
            self.message = Some(Some(reply.clone()));
        }
        self.last_upstream = Some((step.clone(), code));
    }

    fn tls_started(&mut self) {
        // The session starts over: a new EHLO is needed, offers reset.
        self.greeted = false;
        self.offer_smtputf8 = Offer::default().smtputf8;
    }

    fn message_complete(&mut self) {
        self.message = Some(None);
    }

    fn check(&mut self, session: &Session, action: &Action, fed: &Fed) {
        let context = session.context();
        assert!(
            context.recipients.len() <= self.limits.max_recipients,
            "{} recipients, limit {}",
            context.recipients.len(),
            self.limits.max_recipients
        );
        for rcpt in &context.recipients {
            assert!(
                self.accepted_rcpts.contains(rcpt),
                "recipient {rcpt:?} not accepted"
            );
        }
        // (Closing ends the session where it stands: the envelope is kept.)
        if !session.is_closed() {
            assert_eq!(
                session.in_transaction(),
                context.sender.is_some(),
                "transaction without sender or sender outside one"
            );
            if !session.in_transaction() {
                assert!(
                    context.recipients.is_empty(),
                    "recipients outside a transaction"
                );
            }
        }
        assert_eq!(
            session.is_closed(),
            matches!(action, Action::Close(_)),
            "closed state and Close action disagree after {fed:?}"
        );

        match action {
            Action::Reply(reply) | Action::Close(reply) | Action::AbortUpstream(reply) => {
                assert!(
                    (200..=599).contains(&reply.code()),
                    "reply {reply:?} after {fed:?}"
                );
                if let Some(end) = self.message.take() {
                    self.check_message_answer(end, action, fed);
                }
                if matches!(action, Action::AbortUpstream(_)) {
                    assert!(
                        !session.in_transaction(),
                        "aborted but still in a transaction"
                    );
                }
            }
            Action::ReceiveData(reply) => {
                assert_eq!(reply.code(), 354);
                assert!(
                    matches!(
                        self.last_upstream,
                        Some((UpstreamStep::Data, Some(300..=399)))
                    ) && matches!(fed, Fed::Upstream(Ok(_))),
                    "message data without the upstream's 3xx to DATA (after {fed:?})"
                );
                assert!(!context.recipients.is_empty());
            }
            Action::Ask(request) => {
                assert!(
                    !self.refused,
                    "policy asked {request:?} in a refused session"
                );
                if let PolicyRequest::MailFrom { .. } = request {
                    assert!(
                        !self.capabilities.auth_required || context.auth_user.is_some(),
                        "MAIL before AUTH on a listener that requires it"
                    );
                }
                if let PolicyRequest::RcptTo { .. } = request {
                    assert!(session.in_transaction());
                    assert!(context.recipients.len() < self.limits.max_recipients);
                }
                if let PolicyRequest::Data(_) = request {
                    assert_eq!(fed, &Fed::Data("complete"));
                }
            }
            Action::Upstream(step) => {
                assert!(!self.refused, "upstream {step:?} in a refused session");
                self.check_upstream_step(session, step, fed);
            }
            Action::AuthChallenge(reply) => {
                assert_eq!(reply.code(), 334, "challenge {reply:?} after {fed:?}");
                assert!(!self.refused && !session.in_transaction());
                assert!(self.capabilities.auth, "AUTH without a backend");
            }
            Action::VerifyCredentials(_) => {
                assert!(!self.refused && !session.in_transaction());
                assert!(self.capabilities.auth, "credentials without a backend");
                assert!(context.auth_user.is_none(), "AUTH twice");
            }
            Action::StartTls(reply) => {
                assert_eq!(reply.code(), 220);
                assert!(self.capabilities.starttls && !context.tls);
                assert!(!self.refused && !session.in_transaction());
            }
        }
    }

    /// Every upstream step has the consent it needs.
    fn check_upstream_step(&self, session: &Session, step: &UpstreamStep, fed: &Fed) {
        let context = session.context();
        let accepted = |want: &dyn Fn(&PolicyRequest) -> bool| {
            matches!(fed, Fed::Policy(Decision::Accept))
                && matches!(&self.last_ask, Some((request, true)) if want(request))
        };
        match step {
            UpstreamStep::Mail { path, params } => {
                assert!(self.greeted, "MAIL upstream before HELO/EHLO");
                assert!(!session.in_transaction(), "nested MAIL upstream");
                assert!(accepted(
                    &|r| matches!(r, PolicyRequest::MailFrom { sender, .. } if sender == path)
                ));
                for p in params {
                    match (p.name.as_str(), p.value.as_deref()) {
                        ("SIZE", Some(v)) => {
                            let size: u64 = v.parse().expect("SIZE is a number");
                            assert!(size <= self.limits.max_message_size, "SIZE over the limit");
                        }
                        ("BODY", Some(v)) => assert!(
                            v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME")
                        ),
                        ("SMTPUTF8", None) => {
                            assert!(self.capabilities.smtputf8 && self.offer_smtputf8)
                        }
                        _ => panic!("parameter {p:?} sent upstream"),
                    }
                }
            }
            UpstreamStep::Rcpt { path } => {
                assert!(session.in_transaction(), "RCPT upstream without MAIL");
                assert!(accepted(
                    &|r| matches!(r, PolicyRequest::RcptTo { recipient, .. } if recipient == path)
                ));
            }
            UpstreamStep::Data => {
                assert!(session.in_transaction(), "DATA upstream without MAIL");
                assert!(
                    !context.recipients.is_empty(),
                    "DATA upstream without recipients"
                );
                assert!(
                    matches!(fed, Fed::Command(Some(Ok(Command::Data)))),
                    "DATA upstream after {fed:?}"
                );
            }
            UpstreamStep::EndData => {
                assert!(
                    self.message.is_some(),
                    "end of data without a complete message"
                );
                assert!(accepted(&|r| matches!(r, PolicyRequest::Data(_))));
            }
        }
    }

    /// The client's answer to a complete message: 2xx only as the
    /// upstream's own 2xx to the end of data, and that 2xx always reaches
    /// the client.
    fn check_message_answer(&self, end: Option<Reply>, action: &Action, fed: &Fed) {
        let reply = match action {
            Action::Reply(r) | Action::Close(r) | Action::AbortUpstream(r) => r,
            _ => unreachable!("only replies come here"),
        };
        if reply.is_positive() {
            let upstream = end
                .as_ref()
                .expect("2xx for a message the upstream never ended");
            assert!(
                upstream.is_positive(),
                "2xx for a message the upstream refused"
            );
            assert_eq!(reply, upstream, "the client's 2xx is not the upstream's");
        }
        if let Some(upstream) = end
            && upstream.is_positive()
        {
            assert_eq!(
                action,
                &Action::Reply(upstream),
                "the upstream accepted the message but the client was told otherwise (after {fed:?})"
            );
        }
    }
}

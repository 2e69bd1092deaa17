//! Session state machine tables: plain values in, actions out.

use super::*;
use crate::smtp::parse_command;
use std::net::SocketAddr;

fn session() -> Session {
    let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let server: SocketAddr = "192.0.2.254:25".parse().unwrap();
    Session::new(
        "mx.test".into(),
        SessionLimits {
            max_message_size: 1000,
            max_recipients: 2,
            max_errors: 10,
        },
        Capabilities::default(),
        PolicyContext::connected(1, client, server, None),
    )
}

fn cmd(s: &mut Session, line: &str) -> Action {
    s.command(parse_command(line.as_bytes()))
}

fn code(action: &Action) -> u16 {
    match action {
        Action::Reply(r) | Action::Close(r) | Action::AbortUpstream(r) | Action::ReceiveData(r) => {
            r.code()
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn accept(s: &mut Session) -> Action {
    s.policy_answered(Decision::Accept, Offer::default())
}

/// Greeted and EHLO'd.
fn ready() -> Session {
    let mut s = session();
    assert_eq!(s.start(), Action::Ask(PolicyRequest::Connect));
    assert_eq!(code(&accept(&mut s)), 220);
    assert!(matches!(
        cmd(&mut s, "EHLO client.test"),
        Action::Ask(PolicyRequest::Helo { .. })
    ));
    assert_eq!(accept(&mut s), Action::Ask(PolicyRequest::Extensions));
    let ehlo = accept(&mut s);
    let Action::Reply(reply) = ehlo else { panic!() };
    assert_eq!(
        reply.lines(),
        [
            "mx.test",
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "ENHANCEDSTATUSCODES"
        ]
    );
    s
}

/// In a transaction with one recipient, after the upstream's 354.
fn receiving_data() -> Session {
    let mut s = ready();
    cmd(&mut s, "MAIL FROM:<a@x.test>");
    accept(&mut s);
    upstream_ok(&mut s, 250);
    cmd(&mut s, "RCPT TO:<b@x.test>");
    accept(&mut s);
    upstream_ok(&mut s, 250);
    cmd(&mut s, "DATA");
    assert!(matches!(upstream_ok(&mut s, 354), Action::ReceiveData(_)));
    s
}

fn upstream_ok(s: &mut Session, code: u16) -> Action {
    s.upstream_answered(Ok(Reply::new(code, "x")))
}

#[test]
fn a_whole_transaction() {
    let mut s = ready();
    assert!(matches!(
        cmd(&mut s, "MAIL FROM:<a@x.test>"),
        Action::Ask(PolicyRequest::MailFrom { .. })
    ));
    assert!(matches!(
        accept(&mut s),
        Action::Upstream(UpstreamStep::Mail { .. })
    ));
    assert_eq!(code(&upstream_ok(&mut s, 250)), 250);
    assert_eq!(s.context().sender.as_deref(), Some("a@x.test"));
    assert!(matches!(
        cmd(&mut s, "RCPT TO:<b@y.test>"),
        Action::Ask(PolicyRequest::RcptTo { .. })
    ));
    assert_eq!(
        accept(&mut s),
        Action::Upstream(UpstreamStep::Rcpt {
            path: "b@y.test".into()
        })
    );
    assert_eq!(code(&upstream_ok(&mut s, 250)), 250);
    assert_eq!(cmd(&mut s, "DATA"), Action::Upstream(UpstreamStep::Data));
    assert!(matches!(upstream_ok(&mut s, 354), Action::ReceiveData(_)));
    assert!(matches!(
        s.data_received(DataOutcome::Complete(MessageSummary::default())),
        Action::Ask(PolicyRequest::Data(_))
    ));
    assert_eq!(accept(&mut s), Action::Upstream(UpstreamStep::EndData));
    assert_eq!(code(&upstream_ok(&mut s, 250)), 250);
    assert!(!s.in_transaction());
    assert_eq!(s.context().recipients.len(), 0);
    assert_eq!(code(&cmd(&mut s, "QUIT")), 221);
    assert!(s.is_closed());
}

#[test]
fn sequence_errors() {
    let mut s = session();
    s.start();
    accept(&mut s);
    assert_eq!(code(&cmd(&mut s, "MAIL FROM:<a@x.test>")), 503);
    let mut s = ready();
    assert_eq!(code(&cmd(&mut s, "RCPT TO:<b@y.test>")), 503);
    assert_eq!(code(&cmd(&mut s, "DATA")), 503);
    cmd(&mut s, "MAIL FROM:<a@x.test>");
    accept(&mut s);
    upstream_ok(&mut s, 250);
    assert_eq!(code(&cmd(&mut s, "MAIL FROM:<a@x.test>")), 503);
    assert_eq!(code(&cmd(&mut s, "DATA")), 503);
}

#[test]
fn refused_recipients_and_the_limit() {
    let mut s = ready();
    cmd(&mut s, "MAIL FROM:<a@x.test>");
    accept(&mut s);
    upstream_ok(&mut s, 250);
    cmd(&mut s, "RCPT TO:<b@y.test>");
    let rejected = s.policy_answered(
        Decision::Reject(Reply::new(554, "5.7.1 Relay access denied")),
        Offer::default(),
    );
    assert_eq!(code(&rejected), 554);
    assert_eq!(
        code(&cmd(&mut s, "DATA")),
        554,
        "all recipients refused: no valid recipients"
    );
    for _ in 0..2 {
        cmd(&mut s, "RCPT TO:<c@x.test>");
        accept(&mut s);
        upstream_ok(&mut s, 250);
    }
    assert_eq!(code(&cmd(&mut s, "RCPT TO:<d@x.test>")), 452);
}

#[test]
fn upstream_rejections_are_relayed_and_failures_are_transient() {
    let mut s = ready();
    cmd(&mut s, "MAIL FROM:<a@x.test>");
    accept(&mut s);
    upstream_ok(&mut s, 250);
    cmd(&mut s, "RCPT TO:<unknown@x.test>");
    accept(&mut s);
    assert_eq!(code(&upstream_ok(&mut s, 550)), 550);
    assert!(s.context().recipients.is_empty());
    cmd(&mut s, "RCPT TO:<b@x.test>");
    accept(&mut s);
    let failed = s.upstream_answered(Err(UpstreamProblem::Unavailable));
    assert!(matches!(failed, Action::AbortUpstream(ref r) if r.code() == 451));
    assert!(!s.in_transaction());
}

#[test]
fn bad_data_aborts_upstream() {
    let mut s = receiving_data();
    let action = s.data_received(DataOutcome::Refused(DataProblem::BareLineEnding));
    assert!(matches!(action, Action::AbortUpstream(ref r) if r.code() == 550));
    assert!(!s.in_transaction());
}

#[test]
fn policy_reject_at_data_aborts_upstream() {
    let mut s = receiving_data();
    s.data_received(DataOutcome::Complete(MessageSummary::default()));
    let action = s.policy_answered(
        Decision::Reject(Reply::new(550, "5.7.1 no")),
        Offer::default(),
    );
    assert!(matches!(action, Action::AbortUpstream(ref r) if r.code() == 550));
}

#[test]
fn mail_parameters() {
    let mut s = ready();
    assert_eq!(code(&cmd(&mut s, "MAIL FROM:<a@x.test> SIZE=1001")), 552);
    assert_eq!(code(&cmd(&mut s, "MAIL FROM:<a@x.test> SIZE=abc")), 501);
    assert_eq!(code(&cmd(&mut s, "MAIL FROM:<a@x.test> SIZE=+5")), 501);
    assert_eq!(code(&cmd(&mut s, "MAIL FROM:<a@x.test> RET=FULL")), 555);
    assert_eq!(
        code(&cmd(&mut s, "MAIL FROM:<a@x.test> SMTPUTF8")),
        555,
        "upstream lacks SMTPUTF8"
    );
    assert!(matches!(
        cmd(&mut s, "MAIL FROM:<a@x.test> SIZE=999 BODY=8BITMIME"),
        Action::Ask(_)
    ));
}

#[test]
fn parameters_need_ehlo() {
    let mut s = session();
    s.start();
    accept(&mut s);
    cmd(&mut s, "HELO client.test");
    assert_eq!(code(&accept(&mut s)), 250);
    assert_eq!(code(&cmd(&mut s, "MAIL FROM:<a@x.test> SIZE=10")), 555);
    assert!(matches!(
        cmd(&mut s, "MAIL FROM:<a@x.test>"),
        Action::Ask(_)
    ));
}

#[test]
fn connect_refusal_allows_only_quit() {
    let mut s = session();
    s.start();
    let refused = s.policy_answered(
        Decision::Reject(Reply::new(550, "5.7.1 go away")),
        Offer::default(),
    );
    assert!(matches!(refused, Action::Reply(ref r) if r.code() == 554));
    assert_eq!(code(&cmd(&mut s, "EHLO x")), 503);
    assert!(matches!(cmd(&mut s, "QUIT"), Action::Close(_)));
    let mut s = session();
    s.start();
    let later = s.policy_answered(
        Decision::Tempfail(Reply::new(451, "4.7.1 later")),
        Offer::default(),
    );
    assert!(matches!(later, Action::Close(ref r) if r.code() == 421));
}

#[test]
fn too_many_errors_close_the_session() {
    let mut s = ready();
    for _ in 0..9 {
        assert_eq!(code(&cmd(&mut s, "BOGUS")), 500);
    }
    assert!(matches!(cmd(&mut s, "BOGUS"), Action::Close(ref r) if r.code() == 421));
}

#[test]
fn non_disclosing_commands() {
    let mut s = ready();
    assert_eq!(code(&cmd(&mut s, "VRFY root")), 252);
    assert_eq!(code(&cmd(&mut s, "EXPN staff")), 502);
    assert_eq!(code(&cmd(&mut s, "HELP")), 214);
    assert_eq!(code(&cmd(&mut s, "NOOP")), 250);
    assert_eq!(code(&cmd(&mut s, "RSET")), 250);
}

//! Session state machine tables: plain values in, actions out.

use super::*;
use crate::hook::ListenerIdentity;
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
        PolicyContext::connected(
            1,
            ListenerIdentity::new("smtp", "relay.test"),
            client,
            server,
            None,
        ),
    )
}

fn cmd(s: &mut Session, line: &str) -> Action {
    s.command(parse_command(line.as_bytes()))
}

fn code(action: &Action) -> u16 {
    match action {
        Action::Reply(r)
        | Action::Close(r)
        | Action::AbortUpstream(r)
        | Action::ReceiveData(r)
        | Action::AuthChallenge(r)
        | Action::StartTls(r) => r.code(),
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

/// Greeted and EHLO'd where the upstream and the policy offer SMTPUTF8
/// (when `offered`), or neither.
fn utf8_ready(offered: bool) -> Session {
    let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let server: SocketAddr = "192.0.2.254:25".parse().unwrap();
    let mut s = Session::new(
        "mx.test".into(),
        SessionLimits {
            max_message_size: 1000,
            max_recipients: 10,
            max_errors: 50,
        },
        Capabilities {
            smtputf8: offered,
            ..Capabilities::default()
        },
        PolicyContext::connected(
            1,
            ListenerIdentity::new("smtp", "relay.test"),
            client,
            server,
            None,
        ),
    );
    s.start();
    accept(&mut s);
    cmd(&mut s, "EHLO client.test");
    accept(&mut s);
    let offer = Offer {
        smtputf8: true,
        ..Offer::default()
    };
    let Action::Reply(ehlo) = s.policy_answered(Decision::Accept, offer) else {
        panic!("no EHLO reply")
    };
    assert_eq!(ehlo.lines().contains(&"SMTPUTF8".to_string()), offered);
    s
}

/// MAIL FROM through the policy and the upstream's 250.
fn open_transaction(s: &mut Session, line: &str) {
    assert!(
        matches!(cmd(s, line), Action::Ask(PolicyRequest::MailFrom { .. })),
        "{line}"
    );
    assert!(matches!(
        accept(s),
        Action::Upstream(UpstreamStep::Mail { .. })
    ));
    assert_eq!(code(&upstream_ok(s, 250)), 250);
}

/// The RCPT's path as the policy is asked about it and the upstream gets it.
fn rcpt_through(s: &mut Session, line: &str) -> (String, String) {
    let Action::Ask(PolicyRequest::RcptTo { recipient, .. }) = cmd(s, line) else {
        panic!("{line}: not asked to the policy")
    };
    let Action::Upstream(UpstreamStep::Rcpt { path }) = accept(s) else {
        panic!("{line}: not sent upstream")
    };
    assert_eq!(code(&upstream_ok(s, 250)), 250);
    (recipient, path)
}

#[test]
fn smtputf8_on_mail_covers_the_transactions_recipients() {
    let mut s = utf8_ready(true);
    open_transaction(&mut s, "MAIL FROM:<josé@example.com> SMTPUTF8");
    for rcpt in [
        "用户@例子.广告",
        "josé@example.com",
        "jürgen@bücher.example",
        "\"δοκιμή\"@example.com",
        "ascii@example.com",
    ] {
        let (policy, upstream) = rcpt_through(&mut s, &format!("RCPT TO:<{rcpt}>"));
        assert_eq!((policy.as_str(), upstream.as_str()), (rcpt, rcpt));
    }
    assert_eq!(s.context().recipients.len(), 5);
    // Parameters on such a RCPT are still judged as on any other.
    assert_eq!(
        code(&cmd(&mut s, "RCPT TO:<用户@例子.广告> NOTIFY=NEVER")),
        555
    );

    // The next transaction without SMTPUTF8 is ASCII-only again.
    cmd(&mut s, "RSET");
    open_transaction(&mut s, "MAIL FROM:<a@example.com>");
    let reply = cmd(&mut s, "RCPT TO:<用户@例子.广告>");
    assert_eq!(
        reply,
        Action::Reply(Reply::new(553, "5.6.7 Non-ASCII address requires SMTPUTF8"))
    );
    assert_eq!(
        rcpt_through(&mut s, "RCPT TO:<b@example.com>").1,
        "b@example.com"
    );
}

#[test]
fn non_ascii_without_smtputf8_is_refused_553() {
    let refused = Action::Reply(Reply::new(553, "5.6.7 Non-ASCII address requires SMTPUTF8"));
    let mut s = utf8_ready(true);
    assert_eq!(cmd(&mut s, "MAIL FROM:<josé@example.com>"), refused);
    // Outside any transaction a UTF-8 RCPT is refused the same way.
    assert_eq!(cmd(&mut s, "RCPT TO:<josé@example.com>"), refused);
    open_transaction(&mut s, "MAIL FROM:<a@example.com>");
    assert_eq!(cmd(&mut s, "RCPT TO:<josé@example.com>"), refused);
    assert_eq!(cmd(&mut s, "RCPT TO:<user@例子.广告>"), refused);
    assert!(s.context().recipients.is_empty());

    // A MAIL whose SMTPUTF8 was refused opens nothing its RCPTs could use.
    let mut s = utf8_ready(true);
    cmd(&mut s, "MAIL FROM:<a@example.com> SMTPUTF8");
    accept(&mut s);
    assert_eq!(code(&upstream_ok(&mut s, 550)), 550);
    open_transaction(&mut s, "MAIL FROM:<a@example.com>");
    assert_eq!(cmd(&mut s, "RCPT TO:<josé@example.com>"), refused);

    // A new EHLO ends the transaction, and its SMTPUTF8.
    let mut s = utf8_ready(true);
    open_transaction(&mut s, "MAIL FROM:<a@example.com> SMTPUTF8");
    cmd(&mut s, "EHLO again.test");
    accept(&mut s);
    s.policy_answered(
        Decision::Accept,
        Offer {
            smtputf8: true,
            ..Offer::default()
        },
    );
    open_transaction(&mut s, "MAIL FROM:<a@example.com>");
    assert_eq!(cmd(&mut s, "RCPT TO:<josé@example.com>"), refused);
}

#[test]
fn smtputf8_is_refused_where_the_upstream_lacks_it() {
    let mut s = utf8_ready(false);
    assert_eq!(
        cmd(&mut s, "MAIL FROM:<josé@example.com> SMTPUTF8"),
        Action::Reply(Reply::new(555, "5.5.4 Unsupported option: SMTPUTF8"))
    );
    assert_eq!(
        code(&cmd(&mut s, "MAIL FROM:<a@example.com> SMTPUTF8")),
        555
    );
    open_transaction(&mut s, "MAIL FROM:<a@example.com>");
    assert_eq!(code(&cmd(&mut s, "RCPT TO:<josé@example.com>")), 553);
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

// SMTP AUTH and STARTTLS.

use sasl::CredentialCheck;

const AUTH_OFFER: Offer = Offer {
    pipelining: true,
    auth: true,
    starttls: true,
    smtputf8: true,
    chunking: true,
};

/// A session whose proxy has a backend and a certificate, greeted with
/// EHLO (under TLS when `tls`), the policy offering AUTH; returns the EHLO reply too.
fn auth_session(requires_tls: bool, tls: bool) -> (Session, Reply) {
    listener_session(
        Capabilities {
            smtputf8: false,
            auth: true,
            auth_requires_tls: requires_tls,
            starttls: true,
            auth_required: false,
        },
        tls,
        AUTH_OFFER,
    )
}

/// A session with `capabilities` (a listener's), under TLS from the start
/// when `tls`, greeted with EHLO, the policy offering `offer`.
fn listener_session(capabilities: Capabilities, tls: bool, offer: Offer) -> (Session, Reply) {
    let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let server: SocketAddr = "192.0.2.254:25".parse().unwrap();
    let mut context = PolicyContext::connected(
        1,
        ListenerIdentity::new("smtp", "relay.test"),
        client,
        server,
        None,
    );
    context.tls = tls;
    let mut s = Session::new(
        "mx.test".into(),
        SessionLimits {
            max_message_size: 1000,
            max_recipients: 2,
            max_errors: 10,
        },
        capabilities,
        context,
    );
    s.start();
    accept(&mut s);
    cmd(&mut s, "EHLO client.test");
    accept(&mut s);
    let Action::Reply(ehlo) = s.policy_answered(Decision::Accept, offer) else {
        panic!("EHLO gets a reply")
    };
    (s, ehlo)
}

fn b64(raw: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn verify_of(action: Action) -> AuthAttempt {
    match action {
        Action::VerifyCredentials(attempt) => attempt,
        other => panic!("expected a credential check, got {other:?}"),
    }
}

fn challenge(action: &Action) -> &str {
    match action {
        Action::AuthChallenge(r) if r.code() == 334 => &r.lines()[0],
        other => panic!("expected a 334 challenge, got {other:?}"),
    }
}

#[test]
fn ehlo_offers_auth_only_where_it_can_work() {
    let (_, ehlo) = auth_session(false, false);
    assert!(ehlo.lines().iter().any(|l| l == "AUTH PLAIN LOGIN"));
    assert!(ehlo.lines().iter().any(|l| l == "STARTTLS"));
    let (mut s, ehlo) = auth_session(true, false);
    assert!(!ehlo.lines().iter().any(|l| l.starts_with("AUTH")));
    assert_eq!(
        code(&cmd(&mut s, "AUTH PLAIN AGFsaWNlAHB3")),
        538,
        "AUTH before TLS with require_tls"
    );
    let (_, ehlo) = auth_session(true, true);
    assert!(ehlo.lines().iter().any(|l| l == "AUTH PLAIN LOGIN"));
    assert!(
        !ehlo.lines().iter().any(|l| l == "STARTTLS"),
        "no STARTTLS under TLS"
    );
    // The policy not asking for AUTH: neither offered nor accepted.
    let (mut s, _) = auth_session(false, false);
    cmd(&mut s, "EHLO client.test");
    accept(&mut s);
    let Action::Reply(ehlo) = accept(&mut s) else {
        panic!()
    };
    assert!(!ehlo.lines().iter().any(|l| l.starts_with("AUTH")));
    assert_eq!(code(&cmd(&mut s, "AUTH PLAIN AGFsaWNlAHB3")), 503);
}

#[test]
fn a_listener_that_requires_auth_offers_it_and_refuses_mail_before_it() {
    let required = Capabilities {
        auth: true,
        auth_requires_tls: true,
        auth_required: true,
        ..Capabilities::default()
    };
    // Under TLS from the start (implicit TLS): AUTH at once, even though
    // the policy did not offer it, and no STARTTLS.
    let (mut s, ehlo) = listener_session(required, true, Offer::default());
    assert!(
        ehlo.lines().iter().any(|l| l == sasl::EHLO_LINE),
        "{ehlo:?}"
    );
    assert!(!ehlo.lines().iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    let refused = cmd(&mut s, "MAIL FROM:<a@example.com>");
    assert_eq!(
        refused,
        Action::Reply(auth_replies::authentication_required())
    );
    verify_of(cmd(&mut s, &format!("AUTH PLAIN {}", b64("\0alice\0pw"))));
    s.credentials_checked(CredentialCheck::Accepted);
    assert_eq!(code(&accept(&mut s)), 235);
    assert!(matches!(
        cmd(&mut s, "MAIL FROM:<a@example.com>"),
        Action::Ask(PolicyRequest::MailFrom { .. })
    ));

    // In clear with require_tls: not offered, and MAIL still refused.
    let (mut s, ehlo) = listener_session(required, false, AUTH_OFFER);
    assert!(
        !ehlo.lines().iter().any(|l| l.starts_with("AUTH")),
        "{ehlo:?}"
    );
    assert_eq!(code(&cmd(&mut s, "MAIL FROM:<a@example.com>")), 530);
    assert_eq!(code(&cmd(&mut s, "AUTH PLAIN AGFsaWNlAHB3")), 538);
}

#[test]
fn a_listener_with_auth_off_never_offers_it() {
    let off = Capabilities {
        auth: false,
        starttls: false,
        ..Capabilities::default()
    };
    let (mut s, ehlo) = listener_session(off, true, AUTH_OFFER);
    assert!(
        !ehlo.lines().iter().any(|l| l.starts_with("AUTH")),
        "{ehlo:?}"
    );
    assert!(!ehlo.lines().iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert_eq!(code(&cmd(&mut s, "AUTH PLAIN AGFsaWNlAHB3")), 503);
    assert!(matches!(
        cmd(&mut s, "MAIL FROM:<a@example.com>"),
        Action::Ask(PolicyRequest::MailFrom { .. })
    ));
}

#[test]
fn plain_with_initial_response_then_policy_then_235() {
    let (mut s, _) = auth_session(false, false);
    let attempt = verify_of(cmd(&mut s, &format!("AUTH PLAIN {}", b64("\0alice\0pw"))));
    assert_eq!(
        (attempt.user.as_str(), attempt.password.as_str()),
        ("alice", "pw")
    );
    assert_eq!(
        s.credentials_checked(CredentialCheck::Accepted),
        Action::Ask(PolicyRequest::Auth {
            mechanism: "PLAIN".into(),
            identity: "alice".into()
        })
    );
    assert_eq!(s.context().auth_user, None, "not before the policy agrees");
    assert_eq!(code(&accept(&mut s)), 235);
    assert_eq!(s.context().auth_user.as_deref(), Some("alice"));
    assert_eq!(
        code(&cmd(&mut s, &format!("AUTH PLAIN {}", b64("\0alice\0pw")))),
        503,
        "AUTH twice"
    );
}

#[test]
fn plain_without_initial_response_and_login() {
    let (mut s, _) = auth_session(false, false);
    assert_eq!(challenge(&cmd(&mut s, "AUTH PLAIN")), "");
    let attempt = verify_of(s.auth_response(b64("alice\0alice\0pw").as_bytes()));
    assert_eq!(attempt.user, "alice");
    assert_eq!(code(&s.credentials_checked(CredentialCheck::Rejected)), 535);

    assert_eq!(challenge(&cmd(&mut s, "AUTH login")), "VXNlcm5hbWU6");
    assert_eq!(
        challenge(&s.auth_response(b64("bob").as_bytes())),
        "UGFzc3dvcmQ6"
    );
    let attempt = verify_of(s.auth_response(b64("secret").as_bytes()));
    assert_eq!(
        (attempt.user.as_str(), attempt.mechanism),
        ("bob", Mechanism::Login)
    );
    assert!(matches!(
        s.credentials_checked(CredentialCheck::Accepted),
        Action::Ask(PolicyRequest::Auth { .. })
    ));
    // The policy refuses the identity: 535, not logged in.
    let refused = s.policy_answered(
        Decision::Reject(Reply::new(550, "5.7.1 not this one")),
        Offer::default(),
    );
    assert_eq!(code(&refused), 535);
    assert_eq!(s.context().auth_user, None);

    // LOGIN with the user name as initial response.
    let first = cmd(&mut s, &format!("AUTH LOGIN {}", b64("carol")));
    assert_eq!(challenge(&first), "UGFzc3dvcmQ6");
    let attempt = verify_of(s.auth_response(b64("pw").as_bytes()));
    assert_eq!(attempt.user, "carol");
    assert_eq!(
        code(&s.credentials_checked(CredentialCheck::Throttled)),
        454
    );
    assert_eq!(code(&cmd(&mut s, "AUTH LOGIN")), 334);
    s.auth_response(b64("carol").as_bytes());
    s.auth_response(b64("pw").as_bytes());
    assert_eq!(
        code(&s.credentials_checked(CredentialCheck::Unavailable)),
        454
    );
    assert_eq!(s.context().auth_user, None);
}

#[test]
fn rfc4954_edge_cases() {
    let (mut s, _) = auth_session(false, false);
    assert_eq!(code(&cmd(&mut s, "AUTH CRAM-MD5")), 504);
    assert_eq!(code(&cmd(&mut s, "AUTH PLAIN not-base64!")), 501);
    assert_eq!(code(&cmd(&mut s, "AUTH PLAIN =")), 501, "empty PLAIN");
    assert_eq!(
        code(&cmd(
            &mut s,
            &format!("AUTH PLAIN {}", b64("bob\0alice\0pw"))
        )),
        535,
        "authzid other than the user"
    );
    assert_eq!(
        code(&cmd(&mut s, &format!("AUTH PLAIN {}", b64("\0alice\0")))),
        535,
        "empty password never reaches the backend"
    );
    cmd(&mut s, "AUTH PLAIN");
    assert_eq!(code(&s.auth_response(b"*")), 501, "cancelled");
    cmd(&mut s, "AUTH LOGIN");
    assert_eq!(code(&s.auth_response(b"*")), 501);
    cmd(&mut s, "AUTH LOGIN");
    assert_eq!(code(&s.auth_response(b"!!")), 501);
    cmd(&mut s, "AUTH LOGIN");
    assert_eq!(
        code(&s.line_too_long()),
        500,
        "an over-long response ends the exchange"
    );
    // After all that the session still takes commands.
    assert_eq!(code(&cmd(&mut s, "NOOP")), 250);
    // Inside a transaction (a fresh session: the one above used up its errors).
    let (mut s, _) = auth_session(false, false);
    cmd(&mut s, "MAIL FROM:<a@x.test>");
    accept(&mut s);
    upstream_ok(&mut s, 250);
    assert_eq!(code(&cmd(&mut s, "AUTH PLAIN")), 503);
    // Before EHLO, and after HELO.
    let mut s = session();
    s.start();
    accept(&mut s);
    assert_eq!(code(&cmd(&mut s, "AUTH PLAIN")), 503);
}

#[test]
fn auth_failures_count_as_errors() {
    let (mut s, _) = auth_session(false, false);
    for _ in 0..9 {
        cmd(&mut s, &format!("AUTH PLAIN {}", b64("\0a\0b")));
        assert_eq!(code(&s.credentials_checked(CredentialCheck::Rejected)), 535);
    }
    cmd(&mut s, &format!("AUTH PLAIN {}", b64("\0a\0b")));
    assert!(matches!(
        s.credentials_checked(CredentialCheck::Rejected),
        Action::Close(ref r) if r.code() == 421
    ));
}

#[test]
fn starttls_resets_the_session() {
    let (mut s, _) = auth_session(true, false);
    let Action::StartTls(reply) = cmd(&mut s, "STARTTLS") else {
        panic!("STARTTLS accepted")
    };
    assert_eq!(reply.code(), 220);
    s.tls_started();
    assert!(s.context().tls);
    assert_eq!(s.context().helo, None);
    assert_eq!(
        code(&cmd(&mut s, "MAIL FROM:<a@x.test>")),
        503,
        "EHLO needed again"
    );
    assert_eq!(code(&cmd(&mut s, "STARTTLS")), 503, "STARTTLS twice");
    cmd(&mut s, "EHLO client.test");
    accept(&mut s);
    let Action::Reply(ehlo) = s.policy_answered(Decision::Accept, AUTH_OFFER) else {
        panic!()
    };
    assert!(ehlo.lines().iter().any(|l| l == "AUTH PLAIN LOGIN"));
    assert!(!ehlo.lines().iter().any(|l| l == "STARTTLS"));
}

#[test]
fn starttls_refusals() {
    // Not configured.
    let mut s = ready();
    assert_eq!(code(&cmd(&mut s, "STARTTLS")), 502);
    // Before EHLO.
    let (mut s, _) = auth_session(false, false);
    cmd(&mut s, "HELO client.test");
    accept(&mut s);
    assert_eq!(code(&cmd(&mut s, "STARTTLS")), 503);
    // In a transaction.
    let (mut s, _) = auth_session(false, false);
    cmd(&mut s, "MAIL FROM:<a@x.test>");
    accept(&mut s);
    upstream_ok(&mut s, 250);
    assert_eq!(code(&cmd(&mut s, "STARTTLS")), 503);
}

// Error counting: every 4xx/5xx reply to a command, as Postfix's smtpd.

#[test]
fn refused_recipients_count_as_errors_and_a_delivery_forgives_them() {
    let mut s = ready();
    cmd(&mut s, "MAIL FROM:<a@x.test>");
    accept(&mut s);
    upstream_ok(&mut s, 250);
    // Policy refusals and the upstream's own refusals both count.
    for n in 1..=4 {
        cmd(&mut s, "RCPT TO:<relay@elsewhere.test>");
        let refused = s.policy_answered(
            Decision::Reject(Reply::new(554, "5.7.1 relay denied")),
            Offer::default(),
        );
        assert_eq!(code(&refused), 554);
        cmd(&mut s, "RCPT TO:<unknown@x.test>");
        accept(&mut s);
        assert_eq!(code(&upstream_ok(&mut s, 550)), 550);
        assert_eq!(s.errors(), 2 * n);
    }
    // Recipients over max_recipients (2) get 452: flow control, not an error.
    for _ in 0..2 {
        cmd(&mut s, "RCPT TO:<b@x.test>");
        accept(&mut s);
        upstream_ok(&mut s, 250);
    }
    assert_eq!(code(&cmd(&mut s, "RCPT TO:<c@x.test>")), 452);
    assert_eq!(s.errors(), 8);
    // A delivered message forgives them.
    cmd(&mut s, "DATA");
    upstream_ok(&mut s, 354);
    s.data_received(DataOutcome::Complete(MessageSummary::default()));
    accept(&mut s);
    assert_eq!(code(&upstream_ok(&mut s, 250)), 250);
    assert_eq!(s.errors(), 0);
    // Ten more refusals reach max_errors (10): the tenth is the 421.
    cmd(&mut s, "MAIL FROM:<a@x.test>");
    accept(&mut s);
    upstream_ok(&mut s, 250);
    for _ in 0..9 {
        cmd(&mut s, "RCPT TO:<unknown@x.test>");
        accept(&mut s);
        assert_eq!(code(&upstream_ok(&mut s, 550)), 550);
    }
    cmd(&mut s, "RCPT TO:<unknown@x.test>");
    accept(&mut s);
    let closed = upstream_ok(&mut s, 550);
    assert!(
        matches!(closed, Action::Close(ref r) if r.code() == 421 && r.lines()[0].starts_with("4.7.0")),
        "{closed:?}"
    );
    assert!(s.is_closed());
}

#[test]
fn a_refused_connection_is_not_an_error_but_what_follows_is() {
    let mut s = session();
    s.start();
    let greeting = s.policy_answered(
        Decision::Reject(Reply::new(554, "5.7.1 go away")),
        Offer::default(),
    );
    assert_eq!(code(&greeting), 554);
    assert_eq!(s.errors(), 0);
    assert_eq!(code(&cmd(&mut s, "EHLO client.test")), 503);
    assert_eq!(s.errors(), 1);
}

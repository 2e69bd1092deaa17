//! SMTP behaviour through the running proxy against a recording upstream:
//! pipelining, RSET and several transactions per session, the upstream's own
//! replies relayed, upstream failures answered 4xx (never 250), XCLIENT, and
//! message data forwarded exactly as checked.

use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{Extension, RecordingUpstream, UpstreamBehaviour};
use std::time::Duration;

const CONFIG: &str = r#"
[proxy]
upstream = "{upstream}"
hostname = "mx.example.com"
max_recipients = 3
upstream_timeout = "2s"

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.2"]
local_domains = ["example.com"]
"#;

const WAIT: Duration = Duration::from_secs(5);

async fn start(behaviour: UpstreamBehaviour) -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start(behaviour).await.unwrap();
    let proxy = TestProxy::start(CONFIG, upstream.addr()).await.unwrap();
    (upstream, proxy)
}

async fn client(proxy: &TestProxy) -> SmtpClient {
    let mut client = SmtpClient::connect_from("127.0.0.2".parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    let greeting = client.read_reply().await.unwrap();
    assert_eq!(greeting.code, 220);
    assert!(
        greeting.text().starts_with("mx.example.com"),
        "{}",
        greeting.text()
    );
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn ehlo_offers_the_base_extensions() {
    let (_upstream, proxy) = start(UpstreamBehaviour::default()).await;
    let mut c = client(&proxy).await;
    let ehlo = c.ehlo("client.test").await.unwrap();
    for ext in ["PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.has_extension(ext), "{ext} missing: {}", ehlo.text());
    }
    assert_eq!(ehlo.extension("SIZE"), Some("35882577"));
    assert!(!ehlo.has_extension("AUTH"), "AUTH is off by default");
    assert!(!ehlo.has_extension("CHUNKING"));
    assert_eq!(c.cmd("HELO client.test").await.unwrap().code, 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_arrive_exactly_as_sent_with_dot_stuffing_kept() {
    let (upstream, proxy) = start(UpstreamBehaviour::default()).await;
    let mut c = client(&proxy).await;
    c.ehlo("client.test").await.unwrap();
    let content =
        b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nnot the end\r\nlast line";
    let t = c
        .send_message("alice@example.com", &["bob@example.com"], content)
        .await
        .unwrap();
    assert!(t.accepted(), "{t:?}");
    let messages = upstream.wait_for_messages(1, WAIT).await.unwrap();
    assert_eq!(messages[0].body, [&content[..], b"\r\n"].concat());
    assert_eq!(messages[0].sender, "alice@example.com");
    assert_eq!(messages[0].recipients, ["bob@example.com"]);
    c.quit().await.unwrap();
    assert!(
        upstream.violations().is_empty(),
        "{:?}",
        upstream.violations()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_transactions_with_rset() {
    let (upstream, proxy) = start(UpstreamBehaviour::default()).await;
    let mut c = client(&proxy).await;
    c.ehlo("client.test").await.unwrap();
    let replies = c
        .pipeline(&[
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "RSET",
            "MAIL FROM:<c@example.com>",
            "RCPT TO:<d@example.com>",
            "RCPT TO:<e@remote.example.net>",
            "DATA",
        ])
        .await
        .unwrap();
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 250, 250, 250, 354]);
    assert!(
        c.send_content(b"Subject: one\r\n\r\nfirst")
            .await
            .unwrap()
            .is_positive()
    );
    // A second transaction on the same session.
    let t = c
        .send_message(
            "f@example.com",
            &["g@example.com"],
            b"Subject: two\r\n\r\nsecond",
        )
        .await
        .unwrap();
    assert!(t.accepted());
    c.quit().await.unwrap();
    let messages = upstream.wait_for_messages(2, WAIT).await.unwrap();
    assert_eq!(messages[0].sender, "c@example.com");
    assert_eq!(
        messages[0].recipients,
        ["d@example.com", "e@remote.example.net"]
    );
    assert_eq!(messages[1].sender, "f@example.com");
    // (The proxy's start-up capability probe is a session without MAIL.)
    let with_mail = upstream
        .sessions()
        .iter()
        .filter(|s| s.commands.iter().any(|c| c.starts_with("MAIL")))
        .count();
    assert_eq!(with_mail, 1, "one upstream connection per client session");
    assert!(
        upstream.violations().is_empty(),
        "{:?}",
        upstream.violations()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_refusals_reach_the_client_verbatim() {
    let behaviour = UpstreamBehaviour::default()
        .reject_recipients(
            "unknown",
            "550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown",
        )
        .data_reply("554 5.7.1 Message content rejected");
    let (upstream, proxy) = start(behaviour).await;
    let mut c = client(&proxy).await;
    c.ehlo("client.test").await.unwrap();
    let t = c
        .send_message(
            "a@example.com",
            &["unknown@example.com", "known@example.com"],
            b"Subject: x\r\n\r\nbody",
        )
        .await
        .unwrap();
    assert_eq!(t.rcpts[0].code, 550);
    assert!(
        t.rcpts[0].text().contains("User unknown"),
        "{}",
        t.rcpts[0].text()
    );
    assert_eq!(t.rcpts[1].code, 250);
    let end = t.end.expect("DATA went ahead");
    assert_eq!(end.code, 554);
    assert_eq!(end.text(), "5.7.1 Message content rejected");
    drop(upstream);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_is_a_temporary_failure() {
    // Bind and drop to get a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = TestProxy::start(CONFIG, closed).await.unwrap();
    let mut c = client(&proxy).await;
    c.ehlo("client.test").await.unwrap();
    let reply = c.cmd("MAIL FROM:<a@example.com>").await.unwrap();
    assert_eq!(reply.code, 451, "{}", reply.text());
    // The session survives and says the same next time.
    assert_eq!(c.cmd("MAIL FROM:<a@example.com>").await.unwrap().code, 451);
    c.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_dropping_mid_message_never_gives_a_250() {
    for behaviour in [
        UpstreamBehaviour::default().close_mid_message(10),
        UpstreamBehaviour::default().close_after_data_go_ahead(),
        UpstreamBehaviour::default().data_delay(Duration::from_secs(4)),
    ] {
        let (upstream, proxy) = start(behaviour).await;
        let mut c = client(&proxy).await;
        c.ehlo("client.test").await.unwrap();
        let body = format!("Subject: big\r\n\r\n{}", "line of text\r\n".repeat(20_000));
        let t = c
            .send_message("a@example.com", &["b@example.com"], body.as_bytes())
            .await
            .unwrap();
        let end = t.end.expect("DATA went ahead");
        assert!(end.is_transient(), "got {} {}", end.code, end.text());
        // The session is still usable.
        assert_eq!(c.cmd("NOOP").await.unwrap().code, 250);
        assert!(
            upstream.messages().iter().all(|m| !m.accepted()),
            "{:?}",
            upstream.messages()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn xclient_tells_the_upstream_who_the_client_is() {
    let (upstream, proxy) = start(UpstreamBehaviour::default().with(Extension::Xclient)).await;
    let mut c = client(&proxy).await;
    c.ehlo("client.test").await.unwrap();
    let t = c
        .send_message("a@example.com", &["b@example.com"], b"Subject: x\r\n\r\nhi")
        .await
        .unwrap();
    assert!(t.accepted());
    let messages = upstream.wait_for_messages(1, WAIT).await.unwrap();
    let xclient = &messages[0].xclient;
    assert_eq!(xclient.get("ADDR").map(String::as_str), Some("127.0.0.2"));
    assert_eq!(xclient.get("HELO").map(String::as_str), Some("client.test"));
    assert_eq!(
        xclient.get("NAME").map(String::as_str),
        Some("[UNAVAILABLE]")
    );
    assert_eq!(xclient.get("PROTO").map(String::as_str), Some("ESMTP"));
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_attempts_never_reach_the_upstream() {
    let (upstream, proxy) = start(UpstreamBehaviour::default()).await;
    let variants: [&[u8]; 5] = [
        b"Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@remote.example.net>\r\nDATA\r\nsmuggled\r\n.\r\n",
        b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@example.com>\r\n.\r\n",
        b"Subject: x\r\n\r\nhello\r\n.\nMAIL FROM:<evil@example.com>\r\n.\r\n",
        b"Subject: x\r\n\r\nhello\r.\r\nMAIL FROM:<evil@example.com>\r\n.\r\n",
        b"Subject: x\r\n\r\nhello\r\n\r.\r\nMAIL FROM:<evil@example.com>\r\n.\r\n",
    ];
    for data in variants {
        let mut c = client(&proxy).await;
        c.ehlo("client.test").await.unwrap();
        c.start_data("a@example.com", "b@example.com")
            .await
            .unwrap();
        c.send_raw(data).await.unwrap();
        let reply = c.read_reply().await.unwrap();
        assert_eq!(
            reply.code,
            550,
            "{:?}: {}",
            String::from_utf8_lossy(data),
            reply.text()
        );
        assert_eq!(
            c.cmd("NOOP").await.unwrap().code,
            250,
            "only one reply for the whole input"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = upstream.log();
    assert!(
        log.messages.iter().all(|m| !m.accepted()),
        "{:?}",
        log.messages
    );
    let smuggled = log
        .sessions
        .iter()
        .flat_map(|s| s.commands.iter())
        .any(|c| c.contains("evil"));
    assert!(!smuggled, "{:#?}", log.sessions);
}

#[tokio::test(flavor = "multi_thread")]
async fn size_and_recipient_limits() {
    let (upstream, proxy) = start(UpstreamBehaviour::default()).await;
    let mut c = client(&proxy).await;
    c.ehlo("client.test").await.unwrap();
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.com> SIZE=999999999")
            .await
            .unwrap()
            .code,
        552
    );
    c.cmd_expect("MAIL FROM:<a@example.com> SIZE=100", 250)
        .await
        .unwrap();
    for i in 0..3 {
        c.cmd_expect(&format!("RCPT TO:<u{i}@example.com>"), 250)
            .await
            .unwrap();
    }
    assert_eq!(c.cmd("RCPT TO:<u4@example.com>").await.unwrap().code, 452);
    c.quit().await.unwrap();
    drop(upstream);
}

#[tokio::test(flavor = "multi_thread")]
async fn syntax_and_sequence_errors() {
    let (upstream, proxy) = start(UpstreamBehaviour::default()).await;
    let mut c = client(&proxy).await;
    assert_eq!(c.cmd("MAIL FROM:<a@example.com>").await.unwrap().code, 503);
    c.ehlo("client.test").await.unwrap();
    assert_eq!(c.cmd("RCPT TO:<b@example.com>").await.unwrap().code, 503);
    assert_eq!(c.cmd("MAIL FROM:a@b@c").await.unwrap().code, 501);
    assert_eq!(c.cmd("FOO").await.unwrap().code, 500);
    assert_eq!(c.cmd("VRFY root").await.unwrap().code, 252);
    assert_eq!(c.cmd("EXPN staff").await.unwrap().code, 502);
    assert_eq!(c.cmd(&"X".repeat(20_000)).await.unwrap().code, 500);
    assert_eq!(c.cmd("NOOP").await.unwrap().code, 250);
    c.quit().await.unwrap();
    let forwarded: Vec<String> = upstream
        .sessions()
        .iter()
        .flat_map(|s| s.commands.clone())
        .filter(|c| !c.starts_with("EHLO") && c != "QUIT")
        .collect();
    assert!(forwarded.is_empty(), "nothing was forwarded: {forwarded:?}");
}

/// [`CONFIG`] with two more local domains, internationalised: `bücher.example`
/// written in its ASCII (xn--) form, `例子.广告` in Unicode.
const UTF8_CONFIG: &str = r#"
[proxy]
upstream = "{upstream}"
hostname = "mx.example.com"
upstream_timeout = "2s"

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.2"]
local_domains = ["example.com", "xn--bcher-kva.example", "例子.广告"]
"#;

/// A greeted client from `from` whose EHLO offers SMTPUTF8 (the proxy offers
/// it once it has seen the upstream offer it, which its start-up probe
/// learns).
async fn utf8_client(proxy: &TestProxy, from: &str) -> SmtpClient {
    let started = std::time::Instant::now();
    loop {
        let mut c = SmtpClient::connect_from(from.parse().unwrap(), proxy.addr())
            .await
            .unwrap();
        assert_eq!(c.read_reply().await.unwrap().code, 220);
        if c.ehlo("client.test")
            .await
            .unwrap()
            .has_extension("SMTPUTF8")
        {
            return c;
        }
        assert!(started.elapsed() < WAIT, "SMTPUTF8 never offered");
        c.quit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn smtputf8_on_mail_carries_to_utf8_recipients_intact() {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default().with(Extension::SmtpUtf8))
        .await
        .unwrap();
    let proxy = TestProxy::start(UTF8_CONFIG, upstream.addr())
        .await
        .unwrap();

    // A listed client relays anywhere: a remote UTF-8 domain, a local domain
    // with a UTF-8 local part, a U-label domain, a quoted UTF-8 local part.
    let mut c = utf8_client(&proxy, "127.0.0.2").await;
    let recipients = [
        "用户@例子.广告",
        "josé@example.com",
        "jürgen@bücher.example",
        "\"δοκιμή χρήστης\"@example.com",
    ];
    c.cmd_expect("MAIL FROM:<josé@example.com> SMTPUTF8", 250)
        .await
        .unwrap();
    for rcpt in recipients {
        c.cmd_expect(&format!("RCPT TO:<{rcpt}>"), 250)
            .await
            .unwrap();
    }
    c.cmd_expect("DATA", 354).await.unwrap();
    let content = "Subject: Grüße\r\nFrom: josé@example.com\r\n\r\n你好\r\n";
    let end = c.send_content(content.as_bytes()).await.unwrap();
    assert_eq!(end.code, 250, "{end:?}");

    // The unlisted client may send to local domains only; the default
    // policy reads UTF-8 local parts, and an internationalised domain is one
    // name whether written in Unicode or in its xn-- form, in the config or
    // in the recipient.
    let mut u = utf8_client(&proxy, "127.0.0.3").await;
    u.cmd_expect("MAIL FROM:<用户@例子.广告> SMTPUTF8", 250)
        .await
        .unwrap();
    for (rcpt, code) in [
        ("josé@example.com", 250),
        ("jürgen@xn--bcher-kva.example", 250),
        ("jürgen@bücher.example", 250),
        ("用户@xn--fsqu00a.xn--4rr70v", 250),
        ("用户@例子.公司", 554),
        ("jürgen@bucher.example", 554),
        ("\"δοκιμή\"@example.com", 250),
    ] {
        let reply = u.cmd(&format!("RCPT TO:<{rcpt}>")).await.unwrap();
        assert_eq!(reply.code, code, "{rcpt}: {reply:?}");
    }
    u.cmd_expect("DATA", 354).await.unwrap();
    assert_eq!(
        u.send_content(b"Subject: x\r\n\r\nx\r\n")
            .await
            .unwrap()
            .code,
        250
    );

    let messages = upstream.wait_for_messages(2, WAIT).await.unwrap();
    assert_eq!(messages[0].sender, "josé@example.com");
    assert_eq!(messages[0].mail_params, ["SMTPUTF8"]);
    assert_eq!(messages[0].recipients, recipients);
    assert_eq!(messages[0].body, content.as_bytes());
    assert_eq!(messages[1].sender, "用户@例子.广告");
    assert_eq!(
        messages[1].recipients,
        [
            "josé@example.com",
            "jürgen@xn--bcher-kva.example",
            "jürgen@bücher.example",
            "用户@xn--fsqu00a.xn--4rr70v",
            "\"δοκιμή\"@example.com"
        ]
    );
    // Byte for byte on the wire (the log decodes lines lossily: a mangled
    // byte would show as U+FFFD and not match).
    let sent: Vec<String> = upstream
        .sessions()
        .iter()
        .flat_map(|s| s.commands.clone())
        .filter(|c| c.starts_with("MAIL") || c.starts_with("RCPT"))
        .collect();
    assert!(
        sent.contains(&"RCPT TO:<用户@例子.广告>".to_string()),
        "{sent:?}"
    );
    assert!(
        sent.contains(&"MAIL FROM:<josé@example.com> SMTPUTF8".to_string()),
        "{sent:?}"
    );
    assert!(
        upstream.violations().is_empty(),
        "{:?}",
        upstream.violations()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_without_smtputf8_is_still_553() {
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default().with(Extension::SmtpUtf8))
        .await
        .unwrap();
    let proxy = TestProxy::start(UTF8_CONFIG, upstream.addr())
        .await
        .unwrap();
    let mut c = utf8_client(&proxy, "127.0.0.2").await;
    let reply = c.cmd("MAIL FROM:<josé@example.com>").await.unwrap();
    assert_eq!(
        (reply.code, reply.enhanced_status()),
        (553, Some("5.6.7")),
        "{reply:?}"
    );
    c.cmd_expect("MAIL FROM:<jose@example.com>", 250)
        .await
        .unwrap();
    for rcpt in ["用户@例子.广告", "josé@example.com", "user@bücher.example"] {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).await.unwrap();
        assert_eq!(
            (reply.code, reply.enhanced_status()),
            (553, Some("5.6.7")),
            "{rcpt}"
        );
    }
    c.cmd_expect("RCPT TO:<bob@example.com>", 250)
        .await
        .unwrap();
    c.cmd_expect("RSET", 250).await.unwrap();
    // SMTPUTF8 holds for its own transaction only.
    c.cmd_expect("MAIL FROM:<a@example.com> SMTPUTF8", 250)
        .await
        .unwrap();
    c.cmd_expect("RCPT TO:<josé@example.com>", 250)
        .await
        .unwrap();
    c.cmd_expect("RSET", 250).await.unwrap();
    c.cmd_expect("MAIL FROM:<a@example.com>", 250)
        .await
        .unwrap();
    assert_eq!(c.cmd("RCPT TO:<josé@example.com>").await.unwrap().code, 553);
    c.quit().await.unwrap();
    let sent: Vec<String> = upstream
        .sessions()
        .iter()
        .flat_map(|s| s.commands.clone())
        .filter(|c| !c.is_ascii())
        .collect();
    assert_eq!(
        sent,
        ["RCPT TO:<josé@example.com>"],
        "only the SMTPUTF8 transaction's recipient reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smtputf8_is_refused_when_the_upstream_does_not_offer_it() {
    let (upstream, proxy) = start(UpstreamBehaviour::default()).await;
    // The start-up probe has seen what the upstream offers.
    upstream
        .wait_until(WAIT, |log| log.sessions.iter().any(|s| s.closed))
        .await
        .unwrap();
    let mut c = client(&proxy).await;
    assert!(
        !c.ehlo("client.test")
            .await
            .unwrap()
            .has_extension("SMTPUTF8")
    );
    for mail in [
        "MAIL FROM:<josé@example.com> SMTPUTF8",
        "MAIL FROM:<a@example.com> SMTPUTF8",
    ] {
        let reply = c.cmd(mail).await.unwrap();
        assert_eq!(
            (reply.code, reply.enhanced_status()),
            (555, Some("5.5.4")),
            "{mail}"
        );
    }
    c.cmd_expect("MAIL FROM:<a@example.com>", 250)
        .await
        .unwrap();
    assert_eq!(c.cmd("RCPT TO:<josé@example.com>").await.unwrap().code, 553);
    c.quit().await.unwrap();
    assert!(
        upstream.violations().is_empty(),
        "{:?}",
        upstream.violations()
    );
}

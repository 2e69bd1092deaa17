//! The runner against the built-in policy: what the proxy's session does
//! decides which hooks a case reaches.

use super::*;

/// The printed lines of `text` run against the built-in policy.
async fn lines(text: &str) -> Vec<String> {
    let file = cases::parse(text).unwrap();
    let mut runner = Runner::new(Path::new(crate::config::BUILTIN_APPLE_RELAY), &file).unwrap();
    let mut report = Report {
        cases: file.cases.len(),
        ..Report::default()
    };
    for (index, case) in file.cases.iter().enumerate() {
        runner
            .run_case(&file, case, case_id(index), &mut report)
            .await
            .unwrap();
    }
    let mut lines: Vec<String> = report.checks.iter().map(ToString::to_string).collect();
    lines.push(report.summary());
    lines
}

#[tokio::test]
async fn auth_the_policy_does_not_offer_is_not_reached() {
    let lines = lines(
        r#"
[config]
local_domains = ["example.com"]
[[case]]
name = "no AUTH offered"
client = "203.0.113.5"
helo = "laptop.example.net"
auth = "alice"
sender = "alice@example.com"
expect = { auth = "accept", mail = "accept" }
"#,
    )
    .await;
    assert_eq!(
        lines,
        [
            "FAIL no AUTH offered / auth: expected accept, got not reached (the proxy answered AUTH with 503 5.5.1 Error: authentication not enabled)",
            "FAIL no AUTH offered / mail: expected accept, got not reached (the proxy answered AUTH with 503 5.5.1 Error: authentication not enabled)",
            "1 cases, 2 checks: 0 ok, 2 FAILED",
        ]
    );
}

#[tokio::test]
async fn a_case_without_helo_still_greets_before_mail() {
    let lines = lines(
        r#"
[config]
local_domains = ["example.com"]
[[case]]
name = "no helo"
client = "2001:db8::5"
sender = "someone@elsewhere.test"
recipients = ["user@example.com"]
expect = { mail = "accept", rcpt = "accept" }
"#,
    )
    .await;
    assert_eq!(
        lines,
        [
            "ok   no helo / mail: accept",
            "ok   no helo / rcpt user@example.com: accept",
            "1 cases, 2 checks: 2 ok, 0 FAILED",
        ]
    );
}

#[tokio::test]
async fn data_after_no_accepted_recipient_is_not_reached() {
    let lines = lines(
        r#"
[config]
open_relay_addr_flag = 1
local_domains = ["example.com"]
[[case]]
name = "relay refused"
client = "203.0.113.5"
helo = "client.example.net"
sender = "someone@elsewhere.test"
recipients = ["friend@remote.test"]
expect = { rcpt = "reject", data = "accept" }
"#,
    )
    .await;
    assert_eq!(
        lines,
        [
            "ok   relay refused / rcpt friend@remote.test: reject 554 5.7.1 Relay access denied",
            "FAIL relay refused / data: expected accept, got not reached (no recipient was accepted)",
            "1 cases, 2 checks: 1 ok, 1 FAILED",
        ]
    );
}

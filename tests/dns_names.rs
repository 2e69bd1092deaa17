//! Host-name and domain entries of `open_relay_addr_list`, matched by
//! forward-confirmed reverse DNS answered by a DNS server the test starts on
//! loopback (never the machine's resolver).

use relaygate_tests::client::SmtpClient;
use relaygate_tests::dns::{Records, TestDns};
use relaygate_tests::proxy::TestProxy;
use relaygate_tests::upstream::{RecordingUpstream, UpstreamBehaviour};

const REMOTE: &str = "someone@remote.example.net";

async fn rcpt_code(proxy: &TestProxy, from: &str) -> u16 {
    let mut client = SmtpClient::connect_from(from.parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    assert_eq!(client.read_reply().await.unwrap().code, 220);
    client.ehlo("client.test").await.unwrap();
    client
        .cmd_expect("MAIL FROM:<a@b.test>", 250)
        .await
        .unwrap();
    let code = client
        .cmd(&format!("RCPT TO:<{REMOTE}>"))
        .await
        .unwrap()
        .code;
    client.quit().await.unwrap();
    code
}

fn config(dns: &TestDns, list: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
[dns]
nameservers = ["{}"]
timeout = "500ms"
[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = [{list}]
local_domains = ["example.com"]
"#,
        dns.addr()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn host_and_domain_entries_match_confirmed_reverse_names() {
    let records = Records::new()
        // A host entry: confirmed both ways.
        .ptr("127.0.0.7", "gw.example.com")
        .a("gw.example.com", "127.0.0.7")
        // A host under a domain entry, name in another case.
        .ptr("127.0.0.8", "Mail.Branch.Example.ORG")
        .a("mail.branch.example.org", "127.0.0.8")
        // Claims a listed name, but the forward lookup does not confirm it.
        .ptr("127.0.0.9", "gw.example.com")
        // A name that merely ends like the domain.
        .ptr("127.0.0.10", "notexample.org")
        .a("notexample.org", "127.0.0.10")
        // A name server failure.
        .ptr("127.0.0.11", "broken.example.org")
        .servfail("broken.example.org");
    let dns = TestDns::start(records).await.unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(
        &config(&dns, r#""gw.example.com", "example.org""#),
        upstream.addr(),
    )
    .await
    .unwrap();
    assert_eq!(rcpt_code(&proxy, "127.0.0.7").await, 250, "host name entry");
    assert_eq!(rcpt_code(&proxy, "127.0.0.8").await, 250, "domain entry");
    assert_eq!(
        rcpt_code(&proxy, "127.0.0.9").await,
        554,
        "unconfirmed reverse name"
    );
    assert_eq!(
        rcpt_code(&proxy, "127.0.0.10").await,
        554,
        "suffix is not a subdomain"
    );
    assert_eq!(
        rcpt_code(&proxy, "127.0.0.11").await,
        554,
        "DNS failure never lists a client"
    );
    assert_eq!(rcpt_code(&proxy, "127.0.0.12").await, 554, "no PTR at all");
    assert!(dns.queries() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_name_server_costs_a_bounded_wait_and_no_relay() {
    let records = Records::new()
        .ptr("127.0.0.13", "slow.example.org")
        .no_answer("slow.example.org");
    let dns = TestDns::start(records).await.unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(&config(&dns, r#""example.org""#), upstream.addr())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(rcpt_code(&proxy, "127.0.0.13").await, 554);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn address_only_lists_cost_no_dns_queries() {
    let dns = TestDns::start(Records::new()).await.unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(&config(&dns, r#""127.0.0.2""#), upstream.addr())
        .await
        .unwrap();
    assert_eq!(rcpt_code(&proxy, "127.0.0.2").await, 250);
    assert_eq!(rcpt_code(&proxy, "127.0.0.3").await, 554);
    assert_eq!(dns.queries(), 0, "{:?}", dns.query_log());
}

/// Like [`config`], with a per-query timeout longer than the bound of the
/// whole name lookup.
fn bounded_config(dns: &TestDns, list: &str) -> String {
    config(dns, list).replace(
        "timeout = \"500ms\"",
        "timeout = \"3s\"\nclient_name_timeout = \"1s\"",
    )
}

/// Connects from `from`, returns the time the greeting took and the reply
/// code to a remote recipient.
async fn timed_rcpt_code(proxy: &TestProxy, from: &str) -> (std::time::Duration, u16) {
    let started = std::time::Instant::now();
    let mut client = SmtpClient::connect_from(from.parse().unwrap(), proxy.addr())
        .await
        .unwrap();
    client.set_read_timeout(std::time::Duration::from_secs(30));
    assert_eq!(client.read_reply().await.unwrap().code, 220);
    let greeted = started.elapsed();
    client.ehlo("client.test").await.unwrap();
    client
        .cmd_expect("MAIL FROM:<a@b.test>", 250)
        .await
        .unwrap();
    let code = client
        .cmd(&format!("RCPT TO:<{REMOTE}>"))
        .await
        .unwrap()
        .code;
    client.quit().await.unwrap();
    (greeted, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reverse_zone_of_many_slow_names_cannot_stall_the_greeting() {
    let mut records = Records::new();
    // 30 PTR names whose forward lookups each answer (nothing) just within
    // the per-query timeout: one after the other, a minute.
    for i in 0..30 {
        let name = format!("slow{i}.stall.example");
        records = records
            .ptr("127.0.0.14", &name)
            .slow(&name, std::time::Duration::from_secs(2));
    }
    // Names that never answer before a confirmed, listed one.
    for i in 0..3 {
        let name = format!("slow{i}.before.example");
        records = records.ptr("127.0.0.15", &name).no_answer(&name);
    }
    records = records
        .ptr("127.0.0.15", "gw15.example.org")
        .a("gw15.example.org", "127.0.0.15")
        .ptr("127.0.0.15", "slow.after.example")
        .no_answer("slow.after.example");
    // Ten names that confirm nothing, then a listed, confirmed one: past
    // the ten names tried.
    for i in 0..10 {
        records = records.ptr("127.0.0.16", &format!("nothing{i}.example.net"));
    }
    records = records
        .ptr("127.0.0.16", "gw16.example.org")
        .a("gw16.example.org", "127.0.0.16");
    let dns = TestDns::start(records).await.unwrap();
    let upstream = RecordingUpstream::start(UpstreamBehaviour::default())
        .await
        .unwrap();
    let proxy = TestProxy::start(&bounded_config(&dns, r#""example.org""#), upstream.addr())
        .await
        .unwrap();
    let bound = std::time::Duration::from_millis(2500);

    let (greeted, code) = timed_rcpt_code(&proxy, "127.0.0.14").await;
    assert!(greeted < bound, "greeting after {greeted:?}");
    assert_eq!(code, 554, "unnamed");
    let tried = (0..30)
        .filter(|i| dns.queries_for(&format!("slow{i}.stall.example")) > 0)
        .count();
    assert!(tried <= 10, "forward lookups for {tried} names");

    let (greeted, code) = timed_rcpt_code(&proxy, "127.0.0.15").await;
    assert!(greeted < bound, "greeting after {greeted:?}");
    assert_eq!(code, 250, "named by the name confirmed in time");

    let (greeted, code) = timed_rcpt_code(&proxy, "127.0.0.16").await;
    assert!(greeted < bound, "greeting after {greeted:?}");
    assert_eq!(code, 554, "the 11th name is not tried");
    assert_eq!(
        dns.queries_for("gw16.example.org"),
        0,
        "{:?}",
        dns.query_log()
    );
}

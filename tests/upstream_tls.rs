//! TLS towards the upstream (`[upstream_tls]`) through the running proxy,
//! against an upstream that speaks SMTP over rustls with a certificate made
//! for the test: STARTTLS and implicit TLS deliver over TLS when the
//! certificate verifies (a CA file, or a pinned digest); an untrusted CA, a
//! wrong name or a wrong pin give the client 451 and nothing reaches the
//! upstream; an upstream without STARTTLS is refused when TLS is required
//! and used in clear when it is not; kept connections stay under TLS.

use relaygate_tests::certs::TestCerts;
use relaygate_tests::client::SmtpClient;
use relaygate_tests::proxy::TestProxy;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How the test upstream offers TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// STARTTLS in its EHLO reply.
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// No TLS at all.
    None,
}

/// One message the test upstream accepted.
#[derive(Debug, Clone)]
struct Received {
    /// Whether it came over TLS.
    tls: bool,
    /// The accepted connection it came on, counting from 0.
    connection: usize,
}

/// What the test upstream saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    messages: Vec<Received>,
    /// Any MAIL command, over TLS or not.
    mail_commands: usize,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An SMTP upstream on loopback presenting `certs`' server certificate.
async fn tls_upstream(certs: &TestCerts, offer: Offer) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certs.cert_pem())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(certs.key_pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let connection = {
                let mut seen = shared.lock().unwrap();
                seen.connections += 1;
                seen.connections - 1
            };
            let (acceptor, seen) = (acceptor.clone(), shared.clone());
            tokio::spawn(async move {
                let _ = serve(tcp, acceptor, offer, connection, seen).await;
            });
        }
    });
    (addr, seen)
}

/// One connection of the test upstream.
async fn serve(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    offer: Offer,
    connection: usize,
    seen: Arc<Mutex<Seen>>,
) -> std::io::Result<()> {
    let mut tls = offer == Offer::Implicit;
    let io: Box<dyn Io> = if tls {
        Box::new(acceptor.accept(tcp).await?)
    } else {
        Box::new(tcp)
    };
    let mut io = BufReader::new(io);
    io.get_mut().write_all(b"220 upstream.test\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if offer == Offer::Starttls && !tls => {
                b"250-upstream.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
            }
            "EHLO" => b"250-upstream.test\r\n250 8BITMIME\r\n",
            "STAR" if offer == Offer::Starttls && !tls => {
                io.get_mut().write_all(b"220 go ahead\r\n").await?;
                let plain = io.into_inner();
                io = BufReader::new(Box::new(acceptor.accept(plain).await?));
                tls = true;
                continue;
            }
            "MAIL" => {
                seen.lock().unwrap().mail_commands += 1;
                b"250 ok\r\n"
            }
            "DATA" => {
                io.get_mut().write_all(b"354 go ahead\r\n").await?;
                loop {
                    line.clear();
                    if io.read_line(&mut line).await? == 0 || line == ".\r\n" {
                        break;
                    }
                }
                seen.lock()
                    .unwrap()
                    .messages
                    .push(Received { tls, connection });
                b"250 queued\r\n"
            }
            "QUIT" => {
                io.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 ok\r\n",
        };
        io.get_mut().write_all(reply).await?;
    }
}

fn config(upstream_tls: &str) -> String {
    format!(
        r#"
[proxy]
upstream = "{{upstream}}"
hostname = "mx.example.com"
upstream_timeout = "5s"

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = []
local_domains = ["example.com"]

[upstream_tls]
{upstream_tls}
"#
    )
}

/// The proxy with `upstream_tls` as its `[upstream_tls]` body.
async fn proxy(upstream: SocketAddr, upstream_tls: &str) -> TestProxy {
    TestProxy::start(&config(upstream_tls), upstream)
        .await
        .unwrap()
}

/// One message through the proxy; the code of the reply to MAIL (the
/// command that opens the upstream connection), then 250 after the data
/// when MAIL was accepted.
async fn send(proxy: &TestProxy) -> (u16, Option<u16>) {
    let sent = SmtpClient::one_message_session(
        "127.0.0.2".parse().unwrap(),
        proxy.addr(),
        "client.test",
        "sender@example.com",
        &["bob@example.com"],
        b"Subject: tls\r\n\r\nhello\r\n",
    )
    .await
    .unwrap();
    (sent.mail.code, sent.end.map(|end| end.code))
}

fn toml_path(path: &std::path::Path) -> String {
    format!("{:?}", path.display().to_string())
}

fn certs() -> TestCerts {
    TestCerts::generate(&["localhost", "127.0.0.1"]).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_with_the_ca_file_delivers_over_tls() {
    let certs = certs();
    let (upstream, seen) = tls_upstream(&certs, Offer::Starttls).await;
    // No server_name: the certificate must name the upstream's IP address.
    let proxy = proxy(
        upstream,
        &format!("mode = \"starttls\"\nca = {}", toml_path(certs.ca_pem())),
    )
    .await;
    assert_eq!(send(&proxy).await, (250, Some(250)));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.messages.len(), 1);
    assert!(seen.messages[0].tls, "delivered over TLS");
}

#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_delivers_and_kept_connections_stay_under_tls() {
    let certs = certs();
    let (upstream, seen) = tls_upstream(&certs, Offer::Implicit).await;
    let proxy = proxy(
        upstream,
        &format!(
            "mode = \"implicit\"\nca = {}\nserver_name = \"localhost\"",
            toml_path(certs.ca_pem())
        ),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(send(&proxy).await, (250, Some(250)));
        // Let the session hand its connection back before the next one.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.messages.len(), 3);
    assert!(seen.messages.iter().all(|m| m.tls), "{:?}", seen.messages);
    let connection = seen.messages[0].connection;
    assert!(
        seen.messages.iter().all(|m| m.connection == connection),
        "one kept connection carried all three: {:?}",
        seen.messages
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_that_does_not_verify_costs_451_and_sends_nothing() {
    let certs = certs();
    let stranger = certs_of_another_ca();
    let (upstream, seen) = tls_upstream(&certs, Offer::Starttls).await;
    for upstream_tls in [
        // Signed by a CA nobody configured.
        format!("mode = \"starttls\"\nca = {}", toml_path(stranger.ca_pem())),
        // The right CA, the wrong name.
        format!(
            "mode = \"starttls\"\nca = {}\nserver_name = \"mail.elsewhere.test\"",
            toml_path(certs.ca_pem())
        ),
        // A pin of another certificate.
        format!(
            "mode = \"starttls\"\npin_sha256 = \"{}\"",
            leaf_sha256(&stranger)
        ),
    ] {
        let proxy = proxy(upstream, &upstream_tls).await;
        let (mail, end) = send(&proxy).await;
        assert_eq!((mail, end), (451, None), "{upstream_tls}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.mail_commands, 0, "nothing reached the upstream");
    assert!(seen.messages.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_certificate_is_accepted_whoever_signed_it() {
    let certs = certs();
    let (upstream, seen) = tls_upstream(&certs, Offer::Starttls).await;
    // The test CA is in no trust store: only the pin can accept it.
    let proxy = proxy(
        upstream,
        &format!(
            "mode = \"starttls\"\npin_sha256 = \"{}\"",
            leaf_sha256(&certs)
        ),
    )
    .await;
    assert_eq!(send(&proxy).await, (250, Some(250)));
    assert!(seen.lock().unwrap().messages[0].tls);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_without_starttls_is_refused_when_required_and_used_in_clear_when_not() {
    let certs = certs();
    let (upstream, seen) = tls_upstream(&certs, Offer::None).await;
    let ca = toml_path(certs.ca_pem());
    let required = proxy(upstream, &format!("mode = \"starttls\"\nca = {ca}")).await;
    assert_eq!(send(&required).await, (451, None));
    assert_eq!(seen.lock().unwrap().mail_commands, 0);
    let opportunistic = proxy(
        upstream,
        &format!("mode = \"starttls\"\nrequired = false\nca = {ca}"),
    )
    .await;
    assert_eq!(send(&opportunistic).await, (250, Some(250)));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.messages.len(), 1);
    assert!(!seen.messages[0].tls, "in clear, as configured");
}

/// Certificates for the same names from a CA of their own.
fn certs_of_another_ca() -> TestCerts {
    certs()
}

/// The SHA-256 of `certs`' server certificate (the first of `cert.pem`), hex.
fn leaf_sha256(certs: &TestCerts) -> String {
    let leaf = CertificateDer::pem_file_iter(certs.cert_pem())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    Sha256::digest(leaf.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

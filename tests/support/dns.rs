//! A small authoritative DNS server for tests.
//!
//! It answers A, AAAA and PTR questions from a fixed [`Records`] table over UDP and TCP on
//! the same `127.0.0.1` port (a resolver falls back to TCP when a UDP answer is truncated).
//! Names compare case-insensitively and without a trailing dot. A name that is not in the
//! table answers NXDOMAIN; a name that is but has no record of the asked type answers
//! NOERROR with no answers (NODATA). Names can also be made to answer SERVFAIL, to never
//! answer (so a test can exercise the caller's timeout), to answer only after a delay (slow
//! but within the caller's timeout), or to answer UDP with the TC bit set (so the caller has
//! to retry over TCP).
//!
//! Beware: hickory-resolver's `Resolver` answers questions about `localhost` and the
//! reverse names of `127.0.0.0/8` and `::1` itself (RFC 6761), without asking any server,
//! so reverse DNS for loopback client addresses cannot be scripted through it. The table
//! may hold PTR records for any address; only the server itself is on loopback.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use relaygate_tests::dns::{Records, TestDns};
//!
//! let dns = TestDns::start(
//!     Records::new()
//!         .ptr("127.0.0.7", "gw.example.com")
//!         .a("gw.example.com", "127.0.0.7")
//!         .servfail("broken.example.com")
//!         .no_answer("slow.example.com"),
//! )
//! .await?;
//! let server = dns.addr(); // hand this to the resolver under test
//! # let _ = server;
//! assert_eq!(dns.queries(), 0);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// TTL given to every answer unless [`Records::ttl`] says otherwise.
pub const DEFAULT_TTL: u32 = 300;

/// The UDP payload size a client may assume without EDNS (RFC 1035).
const PLAIN_UDP_PAYLOAD: usize = 512;

/// The largest UDP payload this server sends even when EDNS allows more (DNS flag day 2020).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// How many times [`TestDns::start`] looks for a port that is free for both UDP and TCP.
const BIND_ATTEMPTS: usize = 20;

/// The name under which `ip`'s PTR record lives: `7.0.0.127.in-addr.arpa` for `127.0.0.7`,
/// the nibble form under `ip6.arpa` for IPv6. No trailing dot.
pub fn reverse_name(ip: IpAddr) -> String {
    normalize(&Name::from(ip).to_ascii())
}

/// Lower case, no trailing dot: the form names are stored and looked up in.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_ip(ip: &str) -> IpAddr {
    ip.parse()
        .unwrap_or_else(|e| panic!("test DNS record: {ip:?} is not an IP address: {e}"))
}

fn parse_name(name: &str) -> Name {
    let mut parsed = Name::from_ascii(name)
        .unwrap_or_else(|e| panic!("test DNS record: {name:?} is not a domain name: {e}"));
    parsed.set_fqdn(true);
    parsed
}

/// What the server does when asked about one name.
#[derive(Clone, Debug, Default)]
enum Behaviour {
    /// Answer from the name's records.
    #[default]
    Answer,
    /// Answer SERVFAIL.
    ServFail,
    /// Never answer, over UDP or TCP.
    Silent,
    /// Over UDP, answer with the TC bit and no records; over TCP, answer normally.
    TruncateUdp,
    /// Answer from the name's records, but only after this long.
    Delay(Duration),
}

#[derive(Clone, Debug, Default)]
struct Entry {
    behaviour: Behaviour,
    records: Vec<RData>,
}

/// The table a [`TestDns`] answers from, built with chained calls.
///
/// The helpers take text because that is how tests spell addresses and names; they panic on
/// text that is not a valid IP address or domain name, which is a bug in the test.
#[derive(Clone, Debug)]
pub struct Records {
    entries: HashMap<String, Entry>,
    ttl: u32,
}

impl Default for Records {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            ttl: DEFAULT_TTL,
        }
    }
}

impl Records {
    /// An empty table: every name answers NXDOMAIN.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str) -> &mut Entry {
        self.entries.entry(normalize(name)).or_default()
    }

    fn add(mut self, name: &str, rdata: RData) -> Self {
        self.entry(name).records.push(rdata);
        self
    }

    /// Adds an A record: `name` resolves to the IPv4 address `ip` (among any others given).
    ///
    /// # Panics
    /// When `ip` is not an IPv4 address.
    pub fn a(self, name: &str, ip: &str) -> Self {
        let IpAddr::V4(ip) = parse_ip(ip) else {
            panic!("test DNS record: A record for {name:?} needs an IPv4 address, got {ip:?}");
        };
        self.add(name, RData::A(A(ip)))
    }

    /// Adds an AAAA record: `name` resolves to the IPv6 address `ip` (among any others given).
    ///
    /// # Panics
    /// When `ip` is not an IPv6 address.
    pub fn aaaa(self, name: &str, ip: &str) -> Self {
        let IpAddr::V6(ip) = parse_ip(ip) else {
            panic!("test DNS record: AAAA record for {name:?} needs an IPv6 address, got {ip:?}");
        };
        self.add(name, RData::AAAA(AAAA(ip)))
    }

    /// Adds a PTR record: the reverse name of `ip` (see [`reverse_name`]) points to `name`.
    ///
    /// # Panics
    /// When `ip` is not an IP address or `name` not a domain name.
    pub fn ptr(self, ip: &str, name: &str) -> Self {
        let reverse = reverse_name(parse_ip(ip));
        self.add(&reverse, RData::PTR(PTR(parse_name(name))))
    }

    /// Makes every question about `name` answer SERVFAIL. For a reverse lookup, pass
    /// [`reverse_name`] of the address.
    pub fn servfail(mut self, name: &str) -> Self {
        self.entry(name).behaviour = Behaviour::ServFail;
        self
    }

    /// Makes the server never answer a question about `name`, over UDP or TCP, so that the
    /// caller runs into its timeout. For a reverse lookup, pass [`reverse_name`] of the
    /// address.
    pub fn no_answer(mut self, name: &str) -> Self {
        self.entry(name).behaviour = Behaviour::Silent;
        self
    }

    /// Makes every question about `name` answer from its records (NODATA when it has none)
    /// only after `delay`, over UDP or TCP: a slow name server that still answers within the
    /// caller's per-query timeout. Other UDP questions are answered meanwhile; over TCP, one
    /// connection's questions are answered in turn.
    pub fn slow(mut self, name: &str, delay: Duration) -> Self {
        self.entry(name).behaviour = Behaviour::Delay(delay);
        self
    }

    /// Makes UDP questions about `name` answer with the TC (truncated) bit and no records,
    /// while TCP answers normally: a resolver only gets the records by retrying over TCP.
    pub fn truncate_udp(mut self, name: &str) -> Self {
        self.entry(name).behaviour = Behaviour::TruncateUdp;
        self
    }

    /// Sets the TTL of every answer (default [`DEFAULT_TTL`]); a small one lets a test see
    /// a cache expire.
    pub fn ttl(mut self, seconds: u32) -> Self {
        self.ttl = seconds;
        self
    }
}

/// How a query reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A UDP datagram.
    Udp,
    /// A length-prefixed message on a TCP connection.
    Tcp,
}

/// One question the server received, answered or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryLogEntry {
    /// The name asked about, lower case, without a trailing dot.
    pub name: String,
    /// The record type asked for, e.g. `RecordType::PTR`.
    pub record_type: RecordType,
    /// How the question arrived.
    pub transport: Transport,
}

impl fmt::Display for QueryLogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({:?})",
            self.name, self.record_type, self.transport
        )
    }
}

/// State shared between the handle and the serving tasks.
#[derive(Debug)]
struct Shared {
    records: Mutex<Records>,
    log: Mutex<Vec<QueryLogEntry>>,
}

impl Shared {
    /// Builds the reply to one wire-format query and how long to hold it back, or `None` when
    /// the server must stay silent (unparseable input, or a name configured with
    /// [`Records::no_answer`]).
    fn respond(&self, query: &[u8], transport: Transport) -> Option<(Vec<u8>, Duration)> {
        let request = Message::from_vec(query).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.authoritative = true;
        response.add_queries(request.queries.iter().cloned());
        let max_udp = match &request.edns {
            Some(edns) => {
                let mut reply_edns = Edns::new();
                reply_edns.set_max_payload(MAX_UDP_PAYLOAD);
                response.set_edns(reply_edns);
                usize::from(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD))
            }
            None => PLAIN_UDP_PAYLOAD,
        };

        let question = match (request.metadata.op_code, request.queries.as_slice()) {
            (OpCode::Query, [question]) => question,
            (OpCode::Query, _) => {
                response.metadata.response_code = ResponseCode::FormErr;
                return response.to_vec().ok().map(|bytes| (bytes, Duration::ZERO));
            }
            _ => {
                response.metadata.response_code = ResponseCode::NotImp;
                return response.to_vec().ok().map(|bytes| (bytes, Duration::ZERO));
            }
        };
        let name = normalize(&question.name().to_ascii());
        let record_type = question.query_type();
        lock(&self.log).push(QueryLogEntry {
            name: name.clone(),
            record_type,
            transport,
        });

        let records = lock(&self.records);
        let mut delay = Duration::ZERO;
        match records.entries.get(&name) {
            None => response.metadata.response_code = ResponseCode::NXDomain,
            Some(entry) => match entry.behaviour {
                Behaviour::Silent => return None,
                Behaviour::ServFail => response.metadata.response_code = ResponseCode::ServFail,
                Behaviour::TruncateUdp if transport == Transport::Udp => {
                    response.metadata.truncation = true;
                }
                Behaviour::Answer | Behaviour::TruncateUdp | Behaviour::Delay(_) => {
                    if let Behaviour::Delay(wait) = entry.behaviour {
                        delay = wait;
                    }
                    let answers = entry
                        .records
                        .iter()
                        .filter(|rdata| {
                            record_type == RecordType::ANY || rdata.record_type() == record_type
                        })
                        .map(|rdata| {
                            Record::from_rdata(question.name().clone(), records.ttl, rdata.clone())
                        });
                    response.add_answers(answers);
                }
            },
        }
        drop(records);

        let bytes = response.to_vec().ok()?;
        if transport == Transport::Udp && bytes.len() > max_udp {
            return response
                .truncate()
                .to_vec()
                .ok()
                .map(|bytes| (bytes, delay));
        }
        Some((bytes, delay))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not hide the log from the assertions that follow.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running test DNS server; stops serving when dropped.
#[derive(Debug)]
pub struct TestDns {
    addr: SocketAddr,
    shared: Arc<Shared>,
    udp_task: JoinHandle<()>,
    tcp_task: JoinHandle<()>,
}

impl TestDns {
    /// Starts a server on `127.0.0.1` with an OS-chosen port, the same for UDP and TCP,
    /// answering from `records`.
    ///
    /// # Errors
    /// When no port free for both protocols is found after a few tries.
    pub async fn start(records: Records) -> anyhow::Result<Self> {
        let (udp, tcp) = bind_pair().await?;
        let addr = udp.local_addr()?;
        let shared = Arc::new(Shared {
            records: Mutex::new(records),
            log: Mutex::new(Vec::new()),
        });
        let udp_task = tokio::spawn(serve_udp(udp, Arc::clone(&shared)));
        let tcp_task = tokio::spawn(serve_tcp(tcp, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            udp_task,
            tcp_task,
        })
    }

    /// The address to send queries to (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many questions the server has received so far, answered or not.
    pub fn queries(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// How many questions about `name` (any type, any transport) the server has received.
    pub fn queries_for(&self, name: &str) -> usize {
        let name = normalize(name);
        lock(&self.shared.log)
            .iter()
            .filter(|entry| entry.name == name)
            .count()
    }

    /// Every question received so far, in arrival order.
    pub fn query_log(&self) -> Vec<QueryLogEntry> {
        lock(&self.shared.log).clone()
    }

    /// Replaces the table the server answers from, e.g. to check that a caller serves a
    /// cached answer instead of asking again. The query log is kept.
    pub fn set_records(&self, records: Records) {
        *lock(&self.shared.records) = records;
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.udp_task.abort();
        self.tcp_task.abort();
    }
}

/// Binds UDP on an OS-chosen port, then TCP on the same one, retrying when the TCP port is
/// taken.
async fn bind_pair() -> anyhow::Result<(UdpSocket, TcpListener)> {
    let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind(any_port)
            .await
            .context("binding the test DNS server's UDP socket")?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e).context("binding the test DNS server's TCP listener"),
        }
    }
    bail!("no port free for both UDP and TCP after {BIND_ATTEMPTS} attempts")
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    // Owning the delayed replies here means aborting this task aborts them all.
    let mut delayed = JoinSet::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        // Errors on an unconnected UDP socket concern one datagram; keep serving.
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            Some(_) = delayed.join_next() => continue,
        };
        let Ok((len, peer)) = received else {
            continue;
        };
        match shared.respond(&buf[..len], Transport::Udp) {
            Some((reply, delay)) if delay.is_zero() => {
                let _ = socket.send_to(&reply, peer).await;
            }
            Some((reply, delay)) => {
                let socket = Arc::clone(&socket);
                delayed.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = socket.send_to(&reply, peer).await;
                });
            }
            None => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connection tasks here means aborting this task aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_tcp_connection(stream, Arc::clone(&shared)));
                }
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Serves length-prefixed queries (RFC 1035 4.2.2) until the client closes.
async fn serve_tcp_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some((reply, delay)) = shared.respond(&query, Transport::Tcp) else {
            continue;
        };
        tokio::time::sleep(delay).await;
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;
    use std::time::Duration;

    use hickory_proto::op::Query;
    use hickory_resolver::Resolver;
    use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    use super::*;

    fn query_bytes(name: &str, record_type: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(parse_name(name), record_type));
        message.to_vec().unwrap()
    }

    async fn ask_udp(server: SocketAddr, name: &str, record_type: RecordType) -> Option<Message> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let query = query_bytes(name, record_type);
        socket.send_to(&query, server).await.unwrap();
        let mut buf = vec![0u8; 65_535];
        let received = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf));
        let len = received.await.ok()?.unwrap();
        let reply = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(
            reply.metadata.id,
            Message::from_vec(&query).unwrap().metadata.id
        );
        Some(reply)
    }

    async fn ask_tcp(server: SocketAddr, name: &str, record_type: RecordType) -> Message {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let query = query_bytes(name, record_type);
        stream.write_u16(query.len() as u16).await.unwrap();
        stream.write_all(&query).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await.unwrap();
        Message::from_vec(&reply).unwrap()
    }

    fn answer_data(reply: &Message) -> Vec<String> {
        reply.answers.iter().map(|r| r.data.to_string()).collect()
    }

    fn sample() -> Records {
        Records::new()
            .ptr("127.0.0.7", "gw.example.com")
            .ptr("192.0.2.7", "gw.example.com")
            .a("gw.example.com", "127.0.0.7")
            .a("gw.example.com", "127.0.0.8")
            .aaaa("gw.example.com", "::1")
            .ptr("::1", "six.example.com")
            .servfail("broken.example.com")
            .no_answer("slow.example.com")
            .truncate_udp("big.example.com")
            .a("big.example.com", "127.0.0.9")
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("127.0.0.7".parse().unwrap()),
            "7.0.0.127.in-addr.arpa"
        );
        assert_eq!(
            reverse_name(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            format!("1.{}ip6.arpa", "0.".repeat(31))
        );
        assert_eq!(
            reverse_name("2001:db8::abcd".parse().unwrap()),
            format!("d.c.b.a.{}8.b.d.0.1.0.0.2.ip6.arpa", "0.".repeat(20))
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn answers_a_aaaa_ptr_over_udp_and_tcp() {
        let dns = TestDns::start(sample()).await.unwrap();
        assert!(dns.addr().ip().is_loopback());

        let reply = ask_udp(dns.addr(), "gw.example.com", RecordType::A)
            .await
            .unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        assert_eq!(answer_data(&reply), ["127.0.0.7", "127.0.0.8"]);

        let reply = ask_tcp(dns.addr(), "GW.Example.COM.", RecordType::AAAA).await;
        assert_eq!(answer_data(&reply), ["::1"]);

        let reply = ask_udp(dns.addr(), "7.0.0.127.in-addr.arpa", RecordType::PTR)
            .await
            .unwrap();
        assert_eq!(answer_data(&reply), ["gw.example.com."]);

        let six = reverse_name(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let reply = ask_tcp(dns.addr(), &six, RecordType::PTR).await;
        assert_eq!(answer_data(&reply), ["six.example.com."]);

        assert_eq!(dns.queries(), 4);
        assert_eq!(dns.queries_for("gw.example.com."), 2);
        let log = dns.query_log();
        assert_eq!(log[1].transport, Transport::Tcp);
        assert_eq!(log[1].name, "gw.example.com");
        assert_eq!(log[1].record_type, RecordType::AAAA);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn nxdomain_nodata_servfail_silence_and_truncation() {
        let dns = TestDns::start(sample()).await.unwrap();

        let reply = ask_udp(dns.addr(), "nowhere.example.com", RecordType::A)
            .await
            .unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(reply.answers.is_empty());

        let reply = ask_udp(dns.addr(), "gw.example.com", RecordType::PTR)
            .await
            .unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());

        let reply = ask_udp(dns.addr(), "broken.example.com", RecordType::A)
            .await
            .unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);

        assert!(
            ask_udp(dns.addr(), "slow.example.com", RecordType::A)
                .await
                .is_none()
        );

        let reply = ask_udp(dns.addr(), "big.example.com", RecordType::A)
            .await
            .unwrap();
        assert!(reply.metadata.truncation);
        assert!(reply.answers.is_empty());
        let reply = ask_tcp(dns.addr(), "big.example.com", RecordType::A).await;
        assert!(!reply.metadata.truncation);
        assert_eq!(answer_data(&reply), ["127.0.0.9"]);

        assert_eq!(dns.queries(), 6);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn slow_names_answer_late_without_holding_up_others() {
        let dns = TestDns::start(
            Records::new()
                .a("late.example.com", "127.0.0.5")
                .slow("late.example.com", Duration::from_millis(400))
                .a("quick.example.com", "127.0.0.6"),
        )
        .await
        .unwrap();
        let started = tokio::time::Instant::now();
        let (late, quick) = tokio::join!(
            ask_udp(dns.addr(), "late.example.com", RecordType::A),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let reply = ask_udp(dns.addr(), "quick.example.com", RecordType::A).await;
                (reply, started.elapsed())
            }
        );
        assert!(quick.1 < Duration::from_millis(350), "{:?}", quick.1);
        assert_eq!(answer_data(&quick.0.unwrap()), ["127.0.0.6"]);
        assert_eq!(answer_data(&late.unwrap()), ["127.0.0.5"]);
        assert!(started.elapsed() >= Duration::from_millis(400));
        let started = tokio::time::Instant::now();
        let reply = ask_tcp(dns.addr(), "late.example.com", RecordType::AAAA).await;
        assert!(reply.answers.is_empty(), "NODATA, late");
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn records_can_be_replaced_and_the_server_stops_on_drop() {
        let dns = TestDns::start(Records::new()).await.unwrap();
        let addr = dns.addr();
        let reply = ask_udp(addr, "late.example.com", RecordType::A)
            .await
            .unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);

        dns.set_records(Records::new().a("late.example.com", "127.0.0.3").ttl(5));
        let reply = ask_udp(addr, "late.example.com", RecordType::A)
            .await
            .unwrap();
        assert_eq!(answer_data(&reply), ["127.0.0.3"]);
        assert_eq!(reply.answers[0].ttl, 5);
        assert_eq!(dns.queries(), 2);

        drop(dns);
        tokio::task::yield_now().await;
        assert!(
            ask_udp(addr, "late.example.com", RecordType::A)
                .await
                .is_none()
        );
    }

    fn resolver_for(dns: &TestDns) -> Resolver<TokioRuntimeProvider> {
        let mut server = NameServerConfig::udp_and_tcp(dns.addr().ip());
        for connection in &mut server.connections {
            connection.port = dns.addr().port();
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(300);
        opts.attempts = 1;
        opts.use_hosts_file = ResolveHosts::Never;
        Resolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![server]),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .unwrap()
    }

    /// The host resolves through hickory-resolver: check the server works with it,
    /// including the TCP fallback and the caching a test may count queries to observe.
    #[tokio::test(flavor = "multi_thread")]
    async fn works_with_hickory_resolver() {
        let dns = TestDns::start(sample()).await.unwrap();
        let resolver = resolver_for(&dns);

        // hickory-resolver answers loopback reverse lookups itself (RFC 6761) without asking
        // any server, so reverse DNS of 127.0.0.0/8 cannot be scripted through its Resolver.
        let names = resolver
            .reverse_lookup("127.0.0.7".parse::<IpAddr>().unwrap())
            .await
            .unwrap();
        let names: Vec<String> = names.answers().iter().map(|r| r.data.to_string()).collect();
        assert_eq!(names, ["localhost."]);
        assert_eq!(dns.queries(), 0);

        let names = resolver
            .reverse_lookup("192.0.2.7".parse::<IpAddr>().unwrap())
            .await
            .unwrap();
        let names: Vec<String> = names.answers().iter().map(|r| r.data.to_string()).collect();
        assert_eq!(names, ["gw.example.com."]);
        assert_eq!(dns.queries_for("7.2.0.192.in-addr.arpa"), 1);

        let ips = resolver.lookup_ip("gw.example.com.").await.unwrap();
        let mut ips: Vec<IpAddr> = ips.iter().collect();
        ips.sort();
        assert!(ips.contains(&"127.0.0.7".parse().unwrap()), "{ips:?}");

        let before = dns.queries();
        resolver.lookup_ip("gw.example.com.").await.unwrap();
        assert_eq!(
            dns.queries(),
            before,
            "a second lookup is served from the cache"
        );

        let big = resolver.ipv4_lookup("big.example.com.").await.unwrap();
        assert_eq!(big.answers().len(), 1);
        let transports: Vec<Transport> = dns
            .query_log()
            .iter()
            .filter(|q| q.name == "big.example.com")
            .map(|q| q.transport)
            .collect();
        assert_eq!(transports, [Transport::Udp, Transport::Tcp]);

        assert!(resolver.ipv4_lookup("nowhere.example.com.").await.is_err());
        assert!(resolver.ipv4_lookup("broken.example.com.").await.is_err());
        let started = tokio::time::Instant::now();
        assert!(resolver.ipv4_lookup("slow.example.com.").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(dns.queries_for("slow.example.com") >= 1);
    }
}

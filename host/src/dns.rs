//! DNS lookups for policies: reverse, forward and forward-confirmed reverse
//! names, with a small TTL cache and a timeout. Name servers come from
//! `[dns] nameservers`, else from the system's resolv.conf.
//!
//! A forward-confirmed name lookup is bounded as a whole, not only per
//! query: whoever controls a client's reverse zone chooses how many PTR
//! names it has and how slowly their forward zones answer, so only the first
//! [`MAX_CONFIRMED_NAMES`] names are tried, in parallel, and the lookup ends
//! at `[dns] client_name_timeout` ([`CLIENT_NAME_TIMEOUT`] by default) with
//! whatever was confirmed by then.
//!
//! Queries go straight to the name servers through hickory's name-server
//! pool rather than its stub resolver: the stub resolver answers reverse
//! lookups of loopback addresses itself ("localhost", RFC 6761), while a
//! relay list must see what the configured servers say.

use crate::config::{CLIENT_NAME_TIMEOUT, DnsConfig};
use crate::net::canonical;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsHandle, NetError};
use hickory_resolver::proto::op::{DnsRequestOptions, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cached answers kept at most.
const CACHE_ENTRIES: usize = 10_000;
/// Shortest and longest time an answer is cached, whatever its TTL.
const MIN_TTL: Duration = Duration::from_secs(5);
const MAX_TTL: Duration = Duration::from_secs(3600);
/// How long "no such name" is cached.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// PTR names of one address whose forward lookups are tried; any further
/// names are ignored (a real host has one, rarely a few).
pub const MAX_CONFIRMED_NAMES: usize = 10;

/// Why a lookup has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// No name server answered in time.
    #[error("DNS timeout")]
    Timeout,
    /// Another failure (server failure, bad name).
    #[error("DNS failure: {0}")]
    Failed(String),
}

type CacheKey = (Name, RecordType);
/// Answers with the instant they expire.
type Cache = HashMap<CacheKey, (Instant, Vec<RData>)>;

/// Answers from a fixed table rather than name servers: for offline runs
/// (`relaygate policy test`), which must not touch the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixedRecords {
    /// A/AAAA records: lower-case name without trailing dot -> addresses.
    pub forward: HashMap<String, Vec<IpAddr>>,
    /// PTR records: address -> names.
    pub reverse: HashMap<IpAddr, Vec<String>>,
}

/// Where answers come from.
#[derive(Clone)]
enum Source {
    Servers(NameServerPool<TokioRuntimeProvider>),
    Fixed(Arc<Mutex<FixedRecords>>),
}

/// The resolver shared by all sessions.
#[derive(Clone)]
pub struct Dns {
    source: Source,
    timeout: Duration,
    /// Bound of a whole [`Dns::confirmed_name`].
    name_timeout: Duration,
    cache: Arc<Mutex<Cache>>,
}

impl Dns {
    /// Build a resolver from `[dns]`.
    pub fn new(config: &DnsConfig) -> anyhow::Result<Self> {
        let (servers, mut options) = if config.nameservers.is_empty() {
            let (system, options) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| anyhow::anyhow!("reading the system DNS configuration: {e}"))?;
            (system.into_parts().2, options)
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            (servers, ResolverOpts::default())
        };
        options.timeout = config.timeout;
        options.attempts = 1;
        let tls = TlsConfig::new().map_err(|e| anyhow::anyhow!("DNS transport setup: {e}"))?;
        let context = Arc::new(PoolContext::new(options, tls));
        let pool = NameServerPool::from_config(servers, context, TokioRuntimeProvider::default());
        Ok(Self {
            source: Source::Servers(pool),
            timeout: config.timeout,
            name_timeout: config.client_name_timeout,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// A resolver that answers only from `records` (which the caller may
    /// change between lookups) and never touches the network.
    pub fn fixed(records: Arc<Mutex<FixedRecords>>) -> Self {
        Self {
            source: Source::Fixed(records),
            timeout: Duration::ZERO,
            name_timeout: CLIENT_NAME_TIMEOUT,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// PTR names of `ip`, lower case without the trailing dot.
    pub async fn reverse(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        if let Source::Fixed(records) = &self.source {
            let records = records.lock().unwrap_or_else(|e| e.into_inner());
            return Ok(records
                .reverse
                .get(&canonical(ip))
                .cloned()
                .unwrap_or_default());
        }
        let name = Name::from(canonical(ip));
        let answers = self.query(name, RecordType::PTR).await?;
        Ok(answers
            .iter()
            .filter_map(|data| match data {
                RData::PTR(ptr) => Some(normalise(&ptr.0)),
                _ => None,
            })
            .collect())
    }

    /// A and AAAA addresses of `name`.
    pub async fn forward(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Source::Fixed(records) = &self.source {
            let records = records.lock().unwrap_or_else(|e| e.into_inner());
            let key = name.trim_end_matches('.').to_ascii_lowercase();
            return Ok(records.forward.get(&key).cloned().unwrap_or_default());
        }
        let mut fqdn = Name::from_utf8(name)
            .map_err(|e| DnsError::Failed(format!("bad name {name:?}: {e}")))?
            .to_lowercase();
        fqdn.set_fqdn(true);
        let (v4, v6) = tokio::join!(
            self.query(fqdn.clone(), RecordType::A),
            self.query(fqdn, RecordType::AAAA)
        );
        let mut addresses = Vec::new();
        for answer in [v4?, v6?].iter().flatten() {
            match answer {
                RData::A(a) => addresses.push(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => addresses.push(IpAddr::V6(aaaa.0)),
                _ => {}
            }
        }
        Ok(addresses)
    }

    /// The first PTR name of `ip` whose forward lookup includes `ip`.
    ///
    /// Bounded as a whole by `[dns] client_name_timeout`: the forward
    /// lookups of the first [`MAX_CONFIRMED_NAMES`] names run in parallel,
    /// and the answer is the first name in PTR order that is confirmed once
    /// the names before it have answered; at the deadline, the first name
    /// confirmed by then. A name that fails to resolve does not hide one
    /// that is confirmed. With no name confirmed, an error when a lookup
    /// failed or ran out of time, else none.
    pub async fn confirmed_name(&self, ip: IpAddr) -> Result<Option<String>, DnsError> {
        let ip = canonical(ip);
        let deadline = tokio::time::Instant::now() + self.name_timeout;
        let mut names = tokio::time::timeout_at(deadline, self.reverse(ip))
            .await
            .map_err(|_| DnsError::Timeout)??;
        let mut seen = std::collections::HashSet::new();
        names.retain(|name| seen.insert(name.clone()));
        names.truncate(MAX_CONFIRMED_NAMES);
        let mut lookups: FuturesUnordered<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| async move { (i, self.forward(name).await) })
            .collect();
        // Per name: none while its lookup runs, then confirmed or not.
        let mut outcomes: Vec<Confirmation> = vec![None; names.len()];
        loop {
            if let Some(decided) = decide(&names, &outcomes) {
                return decided;
            }
            match tokio::time::timeout_at(deadline, lookups.next()).await {
                Ok(Some((i, result))) => {
                    outcomes[i] =
                        Some(result.map(|addresses| {
                            addresses.into_iter().map(canonical).any(|a| a == ip)
                        }));
                }
                Ok(None) => unreachable!("decided once every lookup has answered"),
                Err(_) => break,
            }
        }
        let confirmed = names
            .iter()
            .zip(&outcomes)
            .find(|(_, outcome)| matches!(outcome, Some(Ok(true))));
        match confirmed {
            Some((name, _)) => Ok(Some(name.clone())),
            None => Err(DnsError::Timeout),
        }
    }

    /// One query, answered from the cache when fresh.
    async fn query(&self, name: Name, record_type: RecordType) -> Result<Vec<RData>, DnsError> {
        let key = (name, record_type);
        if let Some(answers) = self.cached(&key) {
            return Ok(answers);
        }
        let Source::Servers(pool) = &self.source else {
            return Ok(Vec::new());
        };
        let query = Query::query(key.0.clone(), record_type);
        let mut responses = pool.lookup(query, DnsRequestOptions::default());
        let response = tokio::time::timeout(self.timeout, responses.next())
            .await
            .map_err(|_| DnsError::Timeout)?
            .ok_or_else(|| DnsError::Failed("no response".to_string()))?;
        let (answers, ttl) = match response {
            Ok(response) => match response.metadata.response_code {
                ResponseCode::NoError => {
                    let ttl = response.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
                    let answers: Vec<RData> = response
                        .answers
                        .iter()
                        .filter(|r| r.record_type() == record_type)
                        .map(|r| r.data.clone())
                        .collect();
                    let ttl = if answers.is_empty() {
                        NEGATIVE_TTL
                    } else {
                        Duration::from_secs(u64::from(ttl))
                    };
                    (answers, ttl)
                }
                ResponseCode::NXDomain => (Vec::new(), NEGATIVE_TTL),
                code => return Err(DnsError::Failed(format!("name server answered {code}"))),
            },
            Err(NetError::Timeout) => return Err(DnsError::Timeout),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => (Vec::new(), NEGATIVE_TTL),
            Err(e) => return Err(DnsError::Failed(e.to_string())),
        };
        self.store(key, answers.clone(), ttl.clamp(MIN_TTL, MAX_TTL));
        Ok(answers)
    }

    fn cached(&self, key: &CacheKey) -> Option<Vec<RData>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, answers)| answers.clone())
    }

    fn store(&self, key: CacheKey, answers: Vec<RData>, ttl: Duration) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (expires, _)| *expires > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (now + ttl, answers));
    }
}

/// One PTR name's forward confirmation: none while its lookup runs, then
/// whether its addresses include the client's, or why there is no answer.
type Confirmation = Option<Result<bool, DnsError>>;

/// The answer of a confirmed-name lookup once it no longer depends on the
/// lookups still running: the first confirmed name in PTR order whose
/// predecessors have all answered; or, when every lookup has answered and
/// none confirmed, the first failure or none.
fn decide(names: &[String], outcomes: &[Confirmation]) -> Option<Result<Option<String>, DnsError>> {
    let mut failure = None;
    for (name, outcome) in names.iter().zip(outcomes) {
        match outcome {
            None => return None,
            Some(Ok(true)) => return Some(Ok(Some(name.clone()))),
            Some(Ok(false)) => {}
            Some(Err(e)) => {
                failure.get_or_insert_with(|| e.clone());
            }
        }
    }
    Some(failure.map_or(Ok(None), Err))
}

fn normalise(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(reverse: &[(&str, &[&str])], forward: &[(&str, &str)]) -> Dns {
        let mut records = FixedRecords::default();
        for (ip, names) in reverse {
            records.reverse.insert(
                ip.parse().unwrap(),
                names.iter().map(|n| n.to_string()).collect(),
            );
        }
        for (name, ip) in forward {
            records
                .forward
                .entry(name.to_string())
                .or_default()
                .push(ip.parse().unwrap());
        }
        Dns::fixed(Arc::new(Mutex::new(records)))
    }

    #[tokio::test]
    async fn only_the_first_ptr_names_are_tried() {
        let many: Vec<String> = (0..30).map(|i| format!("n{i}.example.net")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let ip = "192.0.2.7";
        // Only the 11th name would confirm: past the limit, so no name.
        let dns = fixed(&[(ip, &names)], &[("n10.example.net", ip)]);
        assert_eq!(dns.confirmed_name(ip.parse().unwrap()).await, Ok(None));
        // The 10th is within it; duplicates count once.
        let mut dup = vec!["n0.example.net"; 20];
        dup.extend(&names);
        let dns = fixed(&[(ip, &dup)], &[("n9.example.net", ip)]);
        assert_eq!(
            dns.confirmed_name(ip.parse().unwrap()).await,
            Ok(Some("n9.example.net".into()))
        );
        // The first confirmed name in PTR order wins.
        let dns = fixed(
            &[(ip, &names)],
            &[("n5.example.net", ip), ("n2.example.net", ip)],
        );
        assert_eq!(
            dns.confirmed_name("::ffff:192.0.2.7".parse().unwrap())
                .await,
            Ok(Some("n2.example.net".into()))
        );
    }

    #[test]
    fn the_answer_waits_only_for_earlier_names() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let timeout = || Some(Err(DnsError::Timeout));
        let cases: Vec<(Vec<Confirmation>, _)> = vec![
            // An earlier name still running: undecided.
            (vec![None, Some(Ok(true)), None], None),
            // The first name confirmed: the others do not matter.
            (vec![Some(Ok(true)), None, None], Some(Ok(Some("a".into())))),
            // Earlier names answered (even failed): the confirmed one wins.
            (
                vec![timeout(), Some(Ok(false)), Some(Ok(true))],
                Some(Ok(Some("c".into()))),
            ),
            // All answered, none confirmed: the failure, else none.
            (
                vec![Some(Ok(false)), timeout(), Some(Ok(false))],
                Some(Err(DnsError::Timeout)),
            ),
            (
                vec![Some(Ok(false)), Some(Ok(false)), Some(Ok(false))],
                Some(Ok(None)),
            ),
        ];
        for (outcomes, want) in cases {
            assert_eq!(decide(&names, &outcomes), want, "{outcomes:?}");
        }
        assert_eq!(decide(&[], &[]), Some(Ok(None)));
    }
}

//! DNS lookups for policies: reverse, forward and forward-confirmed reverse
//! names, with a small TTL cache and a timeout. Name servers come from
//! `[dns] nameservers`, else from the system's resolv.conf.
//!
//! Queries go straight to the name servers through hickory's name-server
//! pool rather than its stub resolver: the stub resolver answers reverse
//! lookups of loopback addresses itself ("localhost", RFC 6761), while a
//! relay list must see what the configured servers say.

use crate::config::DnsConfig;
use futures_util::StreamExt;
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
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// A resolver that answers only from `records` (which the caller may
    /// change between lookups) and never touches the network.
    pub fn fixed(records: Arc<Mutex<FixedRecords>>) -> Self {
        Self {
            source: Source::Fixed(records),
            timeout: Duration::ZERO,
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
    pub async fn confirmed_name(&self, ip: IpAddr) -> Result<Option<String>, DnsError> {
        let ip = canonical(ip);
        for name in self.reverse(ip).await? {
            let addresses = self.forward(&name).await?;
            if addresses.into_iter().map(canonical).any(|a| a == ip) {
                return Ok(Some(name));
            }
        }
        Ok(None)
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

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn normalise(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

//! DNS lookups for policies: reverse, forward and forward-confirmed reverse
//! names, with the resolver's cache and a timeout. Name servers come from
//! `[dns] nameservers`, else from the system's resolv.conf.

use crate::config::DnsConfig;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;
use std::net::IpAddr;
use std::time::Duration;

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

/// The resolver shared by all sessions.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    timeout: Duration,
}

impl Dns {
    /// Build a resolver from `[dns]`.
    pub fn new(config: &DnsConfig) -> anyhow::Result<Self> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| anyhow::anyhow!("reading the system DNS configuration: {e}"))?
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
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let options = builder.options_mut();
        options.timeout = config.timeout;
        options.attempts = 1;
        options.ndots = 0;
        let resolver = builder
            .build()
            .map_err(|e| anyhow::anyhow!("building the DNS resolver: {e}"))?;
        Ok(Self {
            resolver,
            timeout: config.timeout,
        })
    }

    /// PTR names of `ip`, lower case without the trailing dot.
    pub async fn reverse(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let lookup = self.bounded(self.resolver.reverse_lookup(ip)).await;
        match lookup {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::PTR(ptr) => Some(normalise(&ptr.0)),
                    _ => None,
                })
                .collect()),
            Err(e) => no_answer_or_error(e),
        }
    }

    /// A and AAAA addresses of `name`.
    pub async fn forward(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let fqdn = Name::from_utf8(name)
            .map_err(|e| DnsError::Failed(format!("bad name {name:?}: {e}")))?
            .to_lowercase();
        let mut fqdn = fqdn;
        fqdn.set_fqdn(true);
        match self.bounded(self.resolver.lookup_ip(fqdn)).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) => no_answer_or_error(e),
        }
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

    /// The resolver has its own timeout per query; this bounds the whole
    /// lookup (several queries, retries) as well.
    async fn bounded<T>(
        &self,
        lookup: impl Future<Output = Result<T, NetError>>,
    ) -> Result<T, LookupError> {
        match tokio::time::timeout(self.timeout * 2, lookup).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(LookupError::Net(e)),
            Err(_) => Err(LookupError::Elapsed),
        }
    }
}

enum LookupError {
    Net(NetError),
    Elapsed,
}

fn no_answer_or_error<T: Default>(error: LookupError) -> Result<T, DnsError> {
    match error {
        LookupError::Elapsed => Err(DnsError::Timeout),
        LookupError::Net(NetError::Timeout) => Err(DnsError::Timeout),
        LookupError::Net(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(T::default()),
        LookupError::Net(e) => Err(DnsError::Failed(e.to_string())),
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

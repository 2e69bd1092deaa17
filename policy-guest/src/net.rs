//! Client networks: the /24 (IPv4) or /64 (IPv6) a client belongs to, so that
//! a site's pool of outgoing servers counts as one client, and network lists.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A network (IPv4 or IPv6) as the config lists them.
pub type IpNetwork = IpNet;
use std::net::IpAddr;

/// A network in CIDR form, or a single address as a host network.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The network of `ip` with `v4_prefix` or `v6_prefix` bits, in CIDR text.
/// An IPv4-mapped IPv6 address counts as IPv4.
pub fn client_network(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let network = match ip {
        IpAddr::V4(v4) => Ipv4Net::new(v4, v4_prefix.min(32)).map(|n| IpNet::V4(n.trunc())),
        IpAddr::V6(v6) => Ipv6Net::new(v6, v6_prefix.min(128)).map(|n| IpNet::V6(n.trunc())),
    };
    network.map_or_else(|_| ip.to_string(), |n| n.to_string())
}

/// Whether `ip` is in any of `networks`.
pub fn contains(networks: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|n| n.contains(&ip))
}

/// The domain of an address (after the last '@'), lower case.
pub fn domain_of(address: &str) -> Option<String> {
    let address = crate::normalise_address(address);
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    (!domain.is_empty()).then(|| domain.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_of_clients() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_network(ip("192.0.2.77"), 24, 64), "192.0.2.0/24");
        assert_eq!(client_network(ip("192.0.2.77"), 32, 64), "192.0.2.77/32");
        assert_eq!(
            client_network(ip("2001:db8:1:2:3:4:5:6"), 24, 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client_network(ip("::ffff:10.1.2.3"), 24, 64), "10.1.2.0/24");
    }

    #[test]
    fn lists_of_networks() {
        let nets: Vec<IpNet> = ["10.0.0.0/8", "192.0.2.5", "2001:db8::/32"]
            .iter()
            .map(|s| parse_network(s).unwrap())
            .collect();
        assert!(contains(&nets, "10.9.8.7".parse().unwrap()));
        assert!(contains(&nets, "192.0.2.5".parse().unwrap()));
        assert!(!contains(&nets, "192.0.2.6".parse().unwrap()));
        assert!(contains(&nets, "::ffff:10.0.0.1".parse().unwrap()));
        assert!(contains(&nets, "2001:db8::1".parse().unwrap()));
        assert!(parse_network("nonsense").is_none());
        // Host bits in a CIDR are tolerated and cleared.
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn domains() {
        assert_eq!(
            domain_of("<Joe@Example.COM>").as_deref(),
            Some("example.com")
        );
        assert_eq!(domain_of("postmaster"), None);
    }
}

//! Which client addresses count as one client for per-client limits.
//!
//! An IPv4 address is one client. An IPv6 client is its prefix (a /64 by
//! default): a subscriber usually gets a whole /64, so counting single IPv6
//! addresses would let one client take every slot of a per-client limit by
//! rotating through its own addresses. IPv4-mapped IPv6 addresses
//! (`::ffff:192.0.2.1`) count as the IPv4 address.

use crate::net::canonical;
use std::net::{IpAddr, Ipv6Addr};

/// The key `ip` is counted under: an IPv4 address as it is, an IPv6 address
/// with everything past its first `ipv6_prefix` bits cleared (`prefix`
/// is clamped to 0..=128; 128 counts each address alone).
pub fn group(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// The clients exempt from per-client limits: `configured`, or by default
/// loopback and this machine's own addresses (as the default policy's blank
/// relay list finds them).
pub fn exempt_or_own(configured: Option<&[ipnet::IpNet]>) -> Vec<ipnet::IpNet> {
    match configured {
        Some(list) => list.to_vec(),
        None => crate::net::own_networks()
            .iter()
            .filter_map(|net| net.parse().ok())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_in_one_prefix_are_one_client() {
        let a = group(ip("2001:db8:1:2::1"), 64);
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_eq!(group(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 64), a);
        assert_ne!(group(ip("2001:db8:1:3::1"), 64), a);
        // Other prefix lengths.
        assert_eq!(group(ip("2001:db8:1:2::1"), 48), ip("2001:db8:1::"));
        assert_eq!(group(ip("2001:db8:1:2::1"), 56), ip("2001:db8:1::"));
        assert_eq!(group(ip("2001:db8:1:2ff::1"), 56), ip("2001:db8:1:200::"));
        assert_eq!(group(ip("2001:db8::7"), 127), ip("2001:db8::6"));
        assert_eq!(group(ip("2001:db8::7"), 128), ip("2001:db8::7"));
        assert_eq!(group(ip("ffff::1"), 1), ip("8000::"));
        assert_eq!(group(ip("ffff::1"), 0), ip("::"));
    }

    #[test]
    fn the_default_exemption_is_loopback_and_own_addresses() {
        let own = exempt_or_own(None);
        for loopback in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            let ip = canonical(ip(loopback));
            assert!(own.iter().any(|n| n.contains(&ip)), "{loopback}: {own:?}");
        }
        assert!(!own.iter().any(|n| n.contains(&ip("192.0.2.1"))), "{own:?}");
        let listed: Vec<ipnet::IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        assert_eq!(exempt_or_own(Some(&listed)), listed);
        assert!(exempt_or_own(Some(&[])).is_empty());
    }

    #[test]
    fn ipv4_counts_alone_whatever_the_ipv6_prefix() {
        assert_eq!(group(ip("192.0.2.1"), 64), ip("192.0.2.1"));
        assert_eq!(group(ip("192.0.2.1"), 1), ip("192.0.2.1"));
        assert_eq!(group(ip("::ffff:192.0.2.1"), 64), ip("192.0.2.1"));
        assert_ne!(group(ip("192.0.2.2"), 1), group(ip("192.0.2.1"), 1));
    }
}

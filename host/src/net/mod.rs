//! Plain address helpers every layer shares: how client addresses compare
//! and group, and which networks are this machine's own. Depends on nothing
//! else in the crate.

pub mod client_group;

use std::net::IpAddr;

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The machine's own addresses as host networks, plus the loopback ranges.
pub fn own_networks() -> Vec<String> {
    let mut networks = vec!["127.0.0.0/8".to_string(), "::1/128".to_string()];
    if let Ok(interfaces) = if_addrs::get_if_addrs() {
        for interface in interfaces {
            let ip = interface.ip();
            if ip.is_loopback() {
                continue;
            }
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            let network = format!("{ip}/{prefix}");
            if !networks.contains(&network) {
                networks.push(network);
            }
        }
    }
    networks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_compares_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn own_networks_start_with_loopback() {
        let networks = own_networks();
        assert_eq!(networks[..2], ["127.0.0.0/8", "::1/128"]);
    }
}

//! XCLIENT (Postfix extension): tell the upstream who the real client is.

/// What the upstream may learn about the real client.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    /// Client IP address.
    pub addr: Option<std::net::IpAddr>,
    /// Client port.
    pub port: Option<u16>,
    /// Confirmed reverse-DNS name.
    pub name: Option<String>,
    /// HELO/EHLO name.
    pub helo: Option<String>,
    /// Greeted with EHLO.
    pub esmtp: bool,
    /// Authenticated identity.
    pub login: Option<String>,
}

/// The XCLIENT command with every attribute the upstream offers that we know.
/// LOGIN goes only with a login, or as `[UNAVAILABLE]` when `clear_login`:
/// the connection's previous client had one.
pub fn command(offered: &[String], client: &ClientIdentity, clear_login: bool) -> String {
    let mut line = String::from("XCLIENT");
    let mut add = |name: &str, value: Option<String>| {
        if offered.iter().any(|o| o == name) {
            let value = value.map_or_else(|| "[UNAVAILABLE]".to_string(), |v| xtext(&v));
            line.push_str(&format!(" {name}={value}"));
        }
    };
    add(
        "ADDR",
        client.addr.map(|ip| match crate::net::canonical(ip) {
            std::net::IpAddr::V6(v6) => format!("IPV6:{v6}"),
            v4 => v4.to_string(),
        }),
    );
    add("PORT", client.port.map(|p| p.to_string()));
    add("NAME", client.name.clone());
    add("HELO", client.helo.clone());
    add(
        "PROTO",
        Some(if client.esmtp { "ESMTP" } else { "SMTP" }.to_string()),
    );
    if client.login.is_some() || clear_login {
        add("LOGIN", client.login.clone());
    }
    line
}

/// RFC 3461 xtext: `+`, `=` and characters outside 33..126 as `+HH`.
fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (33..=126).contains(&byte) && byte != b'+' && byte != b'=' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("+{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_offered_attributes_are_sent() {
        let client = ClientIdentity {
            addr: Some("192.0.2.7".parse().unwrap()),
            port: Some(4000),
            name: None,
            helo: Some("a=b+c".into()),
            esmtp: true,
            login: None,
        };
        let offered: Vec<String> = ["ADDR", "NAME", "HELO", "PROTO"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command(&offered, &client, false),
            "XCLIENT ADDR=192.0.2.7 NAME=[UNAVAILABLE] HELO=a+3Db+2Bc PROTO=ESMTP"
        );
        let v6 = ClientIdentity {
            addr: Some("2001:db8::1".parse().unwrap()),
            ..client
        };
        assert_eq!(
            command(&["ADDR".to_string()], &v6, false),
            "XCLIENT ADDR=IPV6:2001:db8::1"
        );
    }

    #[test]
    fn a_previous_login_is_cleared_and_never_carried_over() {
        let offered: Vec<String> = ["ADDR", "LOGIN"].iter().map(|s| s.to_string()).collect();
        let anonymous = ClientIdentity {
            addr: Some("192.0.2.8".parse().unwrap()),
            ..ClientIdentity::default()
        };
        assert_eq!(
            command(&offered, &anonymous, false),
            "XCLIENT ADDR=192.0.2.8"
        );
        assert_eq!(
            command(&offered, &anonymous, true),
            "XCLIENT ADDR=192.0.2.8 LOGIN=[UNAVAILABLE]"
        );
        let alice = ClientIdentity {
            login: Some("alice".into()),
            ..anonymous
        };
        assert_eq!(
            command(&offered, &alice, true),
            "XCLIENT ADDR=192.0.2.8 LOGIN=alice"
        );
    }
}

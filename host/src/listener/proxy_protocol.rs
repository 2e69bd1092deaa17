//! The PROXY protocol (v1 text and v2 binary, as HAProxy and cloud load
//! balancers send it): on listeners configured for it, every connection
//! starts with a header naming the real client, which then stands for the
//! TCP peer. It is trusted only on those listeners.

use ppp::{HeaderResult, PartialResult, v1, v2};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest header accepted (v1 is at most 107 bytes; v2 with TLVs more).
const MAX_HEADER: usize = 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// No complete header in time.
    #[error("no PROXY header within the time allowed")]
    Timeout,
    /// The peer closed or the socket failed.
    #[error("connection closed before the PROXY header was complete")]
    Closed,
    /// Not a PROXY protocol header.
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
}

/// What the header said: the real client and server addresses (none for a
/// health check sent as LOCAL / UNKNOWN), and any bytes read after it.
#[derive(Debug)]
pub struct Proxied {
    /// (client, server) as the load balancer saw them.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// Bytes that followed the header (the client's first SMTP bytes).
    pub rest: Vec<u8>,
}

/// Read and parse the header at the start of `stream`.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Proxied, HeaderError> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| HeaderError::Timeout)?
            .map_err(|_| HeaderError::Closed)?;
        if read == 0 {
            return Err(HeaderError::Closed);
        }
        buf.extend_from_slice(&chunk[..read]);
        if let Some(parsed) = parse(&buf)? {
            return Ok(parsed);
        }
        if buf.len() > MAX_HEADER {
            return Err(HeaderError::Invalid("header too long".to_string()));
        }
    }
}

/// A complete header at the start of `buf`, or none if more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<Proxied>, HeaderError> {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Ok(None);
    }
    let (length, addresses) = match result {
        HeaderResult::V1(Ok(header)) => (header.header.len(), v1_addresses(&header.addresses)),
        HeaderResult::V2(Ok(header)) => (header.len(), v2_addresses(&header)),
        HeaderResult::V1(Err(e)) => return Err(HeaderError::Invalid(format!("{e:?}"))),
        HeaderResult::V2(Err(e)) => return Err(HeaderError::Invalid(format!("{e:?}"))),
    };
    Ok(Some(Proxied {
        addresses,
        rest: buf.get(length..).unwrap_or_default().to_vec(),
    }))
}

fn v1_addresses(addresses: &v1::Addresses) -> Option<(SocketAddr, SocketAddr)> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        v1::Addresses::Tcp6(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        v1::Addresses::Unknown => None,
    }
}

fn v2_addresses(header: &v2::Header<'_>) -> Option<(SocketAddr, SocketAddr)> {
    if header.command == v2::Command::Local {
        return None;
    }
    match &header.addresses {
        v2::Addresses::IPv4(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        v2::Addresses::IPv6(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_headers() {
        let parsed = parse(b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 25\r\nEHLO x\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed.addresses,
            Some((
                "192.0.2.7:5555".parse().unwrap(),
                "198.51.100.1:25".parse().unwrap()
            ))
        );
        assert_eq!(parsed.rest, b"EHLO x\r\n");
        let v6 = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 25\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            v6.addresses.unwrap().0,
            "[2001:db8::7]:5555".parse().unwrap()
        );
        assert!(
            parse(b"PROXY UNKNOWN\r\n")
                .unwrap()
                .unwrap()
                .addresses
                .is_none()
        );
        assert!(
            parse(b"PROXY TCP4 192.0.2.7").unwrap().is_none(),
            "incomplete"
        );
        assert!(parse(b"EHLO client.example\r\n").is_err());
        assert!(parse(b"PROXY TCP4 300.0.2.7 198.51.100.1 5555 25\r\n").is_err());
    }

    #[test]
    fn v2_headers() {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 bytes
        header.extend_from_slice(&[192, 0, 2, 7, 198, 51, 100, 1, 0x15, 0xb3, 0, 25]);
        header.extend_from_slice(b"EHLO");
        let parsed = parse(&header).unwrap().unwrap();
        assert_eq!(
            parsed.addresses,
            Some((
                "192.0.2.7:5555".parse().unwrap(),
                "198.51.100.1:25".parse().unwrap()
            ))
        );
        assert_eq!(parsed.rest, b"EHLO");
        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert!(parse(&local).unwrap().unwrap().addresses.is_none());
    }
}

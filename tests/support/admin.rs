//! Talking to relaygate's admin endpoint over plain HTTP/1.1, as an
//! operator's tools would.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send `method path` (no body) and return the status code and the whole
/// response, headers included.
///
/// # Errors
/// When the connection fails or the answer takes longer than 30 s.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: relaygate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        stream.read_to_string(&mut response),
    )
    .await??;
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, response))
}

/// The value of one series of `/metrics` at `addr`, named with its labels
/// as the text exposition writes them (`relaygate_x_total{kind="y"}`); 0
/// when it has no sample yet.
///
/// # Panics
/// When `/metrics` does not answer 200.
pub async fn metric(addr: SocketAddr, series: &str) -> u64 {
    let (code, text) = http(addr, "GET", "/metrics")
        .await
        .expect("/metrics answers");
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

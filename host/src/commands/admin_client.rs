//! `relaygate reload` and `relaygate status`: talk to a running proxy's
//! admin endpoint (`[admin] listen` in the same config file).

use anyhow::{Context, bail};
use relaygate::config::Config;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Send one request to the admin endpoint and print the answer; an error
/// status (e.g. a refused reload) is an error.
pub fn admin_request(config: &Config, method: &str, path: &str) -> anyhow::Result<()> {
    let Some(addr) = config.admin_listen else {
        bail!(
            "no [admin] listen in the configuration: set it to use this command (or send SIGHUP to reload)"
        );
    };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the admin endpoint {addr}"))?;
    // A reload may compile a large module: allow it time.
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("reading the admin endpoint's answer")?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or("");
    print!("{}", decode_body(head, body));
    if !status.contains(" 200 ") {
        bail!("{method} {path}: {status}");
    }
    Ok(())
}

/// The body, de-chunked when the server used chunked transfer encoding.
fn decode_body(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

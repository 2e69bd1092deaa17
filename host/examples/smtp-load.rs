//! A small SMTP load client that, unlike `smtp-source`, times every
//! transaction: `bench/compare.sh` uses it for p50/p99 latency.
//!
//! `smtp-load ADDR SESSIONS MESSAGES SIZE` opens SESSIONS persistent
//! connections (EHLO once), sends MESSAGES messages of SIZE bytes in total
//! (MAIL, RCPT, DATA, body, each reply awaited), and prints one line:
//! `msgs_per_s p50_us p99_us`. A transaction's latency runs from writing
//! MAIL FROM to reading the reply to the end of data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type Conn = BufReader<TcpStream>;

/// Read one (possibly multi-line) reply; its code.
async fn reply(conn: &mut Conn, line: &mut String) -> std::io::Result<u16> {
    loop {
        line.clear();
        if conn.read_line(line).await? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad reply {line:?}")));
        }
    }
}

async fn expect(conn: &mut Conn, line: &mut String, want: u16) -> std::io::Result<()> {
    let code = reply(conn, line).await?;
    if code != want {
        return Err(std::io::Error::other(format!(
            "wanted {want}, got {line:?}"
        )));
    }
    Ok(())
}

/// A message body of about `size` bytes in 78-byte lines, end-of-data included.
fn body(size: usize) -> Vec<u8> {
    let mut body =
        b"From: bench@example.com\r\nTo: sink@remote.example.net\r\nSubject: load\r\n\r\n".to_vec();
    while body.len() + 80 <= size {
        body.extend_from_slice(&[b'x'; 76]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    body
}

async fn session(
    addr: String,
    remaining: Arc<AtomicU64>,
    body: Arc<Vec<u8>>,
) -> std::io::Result<Vec<Duration>> {
    let stream = TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let mut conn = BufReader::new(stream);
    let mut line = String::new();
    expect(&mut conn, &mut line, 220).await?;
    conn.get_mut()
        .write_all(b"EHLO load.bench.test\r\n")
        .await?;
    expect(&mut conn, &mut line, 250).await?;
    let mut times = Vec::new();
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        let started = Instant::now();
        conn.get_mut()
            .write_all(b"MAIL FROM:<bench@example.com>\r\n")
            .await?;
        expect(&mut conn, &mut line, 250).await?;
        conn.get_mut()
            .write_all(b"RCPT TO:<sink@remote.example.net>\r\n")
            .await?;
        expect(&mut conn, &mut line, 250).await?;
        conn.get_mut().write_all(b"DATA\r\n").await?;
        expect(&mut conn, &mut line, 354).await?;
        conn.get_mut().write_all(&body).await?;
        expect(&mut conn, &mut line, 250).await?;
        times.push(started.elapsed());
    }
    conn.get_mut().write_all(b"QUIT\r\n").await?;
    let _ = reply(&mut conn, &mut line).await;
    Ok(times)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, sessions, messages, size] = args.as_slice() else {
        eprintln!("usage: smtp-load ADDR SESSIONS MESSAGES SIZE");
        std::process::exit(2);
    };
    let number = |s: &str| -> u64 { s.parse().expect("a number") };
    let remaining = Arc::new(AtomicU64::new(number(messages)));
    let body = Arc::new(body(number(size) as usize));
    let started = Instant::now();
    let tasks: Vec<_> = (0..number(sessions))
        .map(|_| tokio::spawn(session(addr.clone(), remaining.clone(), body.clone())))
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.map_err(std::io::Error::other)??);
    }
    let elapsed = started.elapsed();
    times.sort_unstable();
    if times.is_empty() {
        return Err(std::io::Error::other("no messages sent"));
    }
    println!(
        "{:.0} {} {}",
        times.len() as f64 / elapsed.as_secs_f64(),
        percentile(&times, 0.50).as_micros(),
        percentile(&times, 0.99).as_micros()
    );
    Ok(())
}

//! A small SMTP load client that, unlike `smtp-source`, times every
//! transaction: `bench/compare.sh` uses it for p50/p99 latency.
//!
//! `smtp-load ADDR SESSIONS MESSAGES SIZE [RATE]` opens SESSIONS persistent
//! connections (EHLO once), sends MESSAGES messages of SIZE bytes in total
//! (MAIL, RCPT, DATA, body, each reply awaited), and prints one line:
//! `msgs_per_s p50_us p99_us`.
//!
//! Without RATE each session sends its next message as soon as the last one
//! is answered (closed loop): the target runs flat out, and latency is
//! mostly queueing (SESSIONS / throughput). A transaction's latency then runs
//! from writing MAIL FROM to reading the reply to the end of data.
//!
//! With RATE (messages per second, all sessions together) message `n` is
//! due at `start + n / RATE` and its latency runs from that moment (open
//! loop): a message sent late because every session was still busy is
//! charged from when it was due, so a target that falls behind shows it;
//! at a rate it sustains the figures show the time a transaction takes.
//!
//! With `SMTP_LOAD_PIPELINE=1` each transaction pipelines (RFC 2920): MAIL,
//! RCPT and DATA in one write, their three replies read after it, then the
//! message: two round trips a message instead of four.

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

/// When messages are due: all at once (closed loop) or at a fixed rate.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    interval: Option<Duration>,
}

impl Schedule {
    /// When message `n` (counting from 0) is due.
    fn due(&self, n: u64) -> Option<Instant> {
        self.interval
            .map(|interval| self.start + interval.mul_f64(n as f64))
    }
}

/// The envelope of every message, then DATA.
const ENVELOPE: [&str; 3] = [
    "MAIL FROM:<bench@example.com>\r\n",
    "RCPT TO:<sink@remote.example.net>\r\n",
    "DATA\r\n",
];

async fn session(
    addr: String,
    total: u64,
    remaining: Arc<AtomicU64>,
    body: Arc<Vec<u8>>,
    schedule: Schedule,
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
    let pipeline = std::env::var("SMTP_LOAD_PIPELINE").is_ok_and(|v| v == "1");
    let mut times = Vec::new();
    while let Ok(left) =
        remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
    {
        let started = match schedule.due(total - left) {
            // Early: wait, and time from when this client woke (its own
            // timer's lateness is not the target's).
            Some(due) if due > Instant::now() => {
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            }
            // Late because every session was still busy: the target is
            // charged for the wait.
            Some(due) => due,
            None => Instant::now(),
        };
        if pipeline {
            conn.get_mut()
                .write_all(ENVELOPE.concat().as_bytes())
                .await?;
            for want in [250, 250, 354] {
                expect(&mut conn, &mut line, want).await?;
            }
        } else {
            for (command, want) in ENVELOPE.iter().zip([250, 250, 354]) {
                conn.get_mut().write_all(command.as_bytes()).await?;
                expect(&mut conn, &mut line, want).await?;
            }
        }
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
    let (addr, sessions, messages, size, rate) = match args.as_slice() {
        [addr, sessions, messages, size] => (addr, sessions, messages, size, None),
        [addr, sessions, messages, size, rate] => (addr, sessions, messages, size, Some(rate)),
        _ => {
            eprintln!("usage: smtp-load ADDR SESSIONS MESSAGES SIZE [RATE]");
            std::process::exit(2);
        }
    };
    let number = |s: &str| -> u64 {
        s.parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{s:?} is not a positive number"))
    };
    let total = number(messages);
    let remaining = Arc::new(AtomicU64::new(total));
    let body = Arc::new(body(number(size) as usize));
    let started = Instant::now();
    // Sessions connect and greet first; the schedule starts after that.
    let schedule = Schedule {
        start: started + Duration::from_millis(200),
        interval: rate.map(|r| Duration::from_secs(1).div_f64(number(r) as f64)),
    };
    let tasks: Vec<_> = (0..number(sessions))
        .map(|_| {
            tokio::spawn(session(
                addr.clone(),
                total,
                remaining.clone(),
                body.clone(),
                schedule,
            ))
        })
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

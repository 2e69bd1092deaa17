//! A fast, multi-threaded SMTP sink for the benchmarks: Postfix's
//! `smtp-sink` serves every connection from one thread, which on a
//! many-core machine becomes the bottleneck before the proxy under test.
//!
//! `fast-sink ADDR [THREADS]` accepts connections on ADDR, answers like a
//! Postfix server would (EHLO with PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES and XCLIENT; `220` after XCLIENT, which resets the
//! session as Postfix does), swallows each message and answers `250`. It
//! reads what a client pipelined and answers it in one write. It keeps
//! nothing; on SIGINT/SIGTERM it prints the number of messages it took.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const EHLO: &[u8] = b"250-fast-sink\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n250-8BITMIME\r\n\
250-ENHANCEDSTATUSCODES\r\n250 XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n";

/// Serve one connection until QUIT or the client goes away.
async fn serve(stream: TcpStream, messages: Arc<AtomicU64>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut line = Vec::with_capacity(1024);
    out.extend_from_slice(b"220 fast-sink ESMTP\r\n");
    let mut in_data = false;
    loop {
        // Answer what was pipelined once nothing more is waiting.
        if !out.is_empty() && reader.buffer().is_empty() {
            write.write_all(&out).await?;
            out.clear();
        }
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if line == b".\r\n" || line == b".\n" {
                in_data = false;
                messages.fetch_add(1, Ordering::Relaxed);
                out.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
            }
            continue;
        }
        let verb: Vec<u8> = line
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .map(u8::to_ascii_uppercase)
            .collect();
        match verb.as_slice() {
            b"EHLO" => out.extend_from_slice(EHLO),
            b"HELO" => out.extend_from_slice(b"250 fast-sink\r\n"),
            b"XCLIENT" => out.extend_from_slice(b"220 fast-sink ESMTP\r\n"),
            b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => out.extend_from_slice(b"250 2.0.0 Ok\r\n"),
            b"DATA" => {
                in_data = true;
                out.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
            }
            b"QUIT" => {
                out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                write.write_all(&out).await?;
                return Ok(());
            }
            _ => out.extend_from_slice(b"502 5.5.2 Error: command not recognized\r\n"),
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2526".to_string());
    let threads = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|e| std::io::Error::other(format!("THREADS: {e}")))?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        let messages = Arc::new(AtomicU64::new(0));
        let counted = messages.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("fast-sink: {} messages", counted.load(Ordering::Relaxed));
            std::process::exit(0);
        });
        loop {
            let (stream, _) = listener.accept().await?;
            let messages = messages.clone();
            tokio::spawn(async move {
                let _ = serve(stream, messages).await;
            });
        }
    })
}

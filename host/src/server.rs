//! The accept loop: a connection permit is taken before `accept` (so a full
//! proxy applies backpressure through the kernel's backlog instead of an
//! unbounded queue), one address may hold only so many connections, each
//! client runs in its own task, and shutdown stops accepting, lets sessions
//! finish at their next command boundary within a grace period, then ends
//! the rest.

use crate::proxy::{SharedState, serve_client};
use crate::proxy_protocol;
use crate::smtp::reply::catalogue;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Server-wide limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Concurrent connections from one client address.
    pub max_connections_per_client: usize,
    /// Time sessions get to finish after shutdown starts.
    pub shutdown_grace: Duration,
}

/// A bound listening socket and how its connections start.
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// Connections start with a PROXY protocol header naming the client.
    pub proxy_protocol: bool,
}

/// How long a load balancer has to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept clients on `listeners` until `shutdown` completes, then drain.
pub async fn run(
    listeners: Vec<Listener>,
    state: Arc<SharedState>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = PerClient::new(limits.max_connections_per_client);
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(
            listener,
            state.clone(),
            permits.clone(),
            per_client.clone(),
            stop_rx.clone(),
            limits.shutdown_grace,
        ));
    }
    state.ready.store(true, Ordering::Relaxed);
    shutdown.await;
    state.ready.store(false, Ordering::Relaxed);
    tracing::info!(
        "shutting down: no new connections, sessions finish within {:?}",
        limits.shutdown_grace
    );
    let _ = stop_tx.send(true);
    while accept_loops.join_next().await.is_some() {}
}

async fn accept_loop(
    listener: Listener,
    state: Arc<SharedState>,
    permits: Arc<Semaphore>,
    per_client: PerClient,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stop.changed() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.socket.accept() => accepted,
            _ = stop.changed() => break,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let server = match stream.local_addr() {
            Ok(addr) => addr,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        state.metrics.connections.inc();
        let state = state.clone();
        let per_client = per_client.clone();
        let session_stop = stop.clone();
        let proxy_protocol = listener.proxy_protocol;
        sessions.spawn(async move {
            let mut stream = stream;
            let (client, server, input) = if proxy_protocol {
                match proxy_protocol::read_header(&mut stream, PROXY_HEADER_TIMEOUT).await {
                    Ok(header) => {
                        let (client, server) = header.addresses.unwrap_or((client, server));
                        (client, server, header.rest)
                    }
                    Err(e) => {
                        tracing::warn!(peer = %client, "connection refused: {e}");
                        return;
                    }
                }
            } else {
                (client, server, Vec::new())
            };
            let Some(slot) = per_client.claim(client.ip()) else {
                tracing::info!(client = %client, "too many connections from this address");
                let reply = catalogue::too_many_connections_from_client(&state.hostname).to_bytes();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), stream.write_all(&reply)).await;
                return;
            };
            serve_client(stream, &input, client, server, state, session_stop).await;
            drop((slot, permit));
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "{} sessions still open after the grace period; closing them",
            sessions.len()
        );
        sessions.shutdown().await;
    }
}

/// Connections open per client address, shared by every listener.
#[derive(Clone)]
struct PerClient {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClient {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for one more connection from `ip`, or none at the limit.
    fn claim(&self, ip: IpAddr) -> Option<ClientSlot> {
        let ip = crate::dns::canonical(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

/// One open connection counted against its address; released on drop.
struct ClientSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_slots_are_counted_and_released() {
        let per_client = PerClient::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let a = per_client.claim(ip).unwrap();
        let _b = per_client.claim(mapped).unwrap();
        assert!(
            per_client.claim(ip).is_none(),
            "mapped IPv6 counts as the same client"
        );
        assert!(per_client.claim("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(per_client.claim(ip).is_some());
    }
}

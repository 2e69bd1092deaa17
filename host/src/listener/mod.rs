//! The accept loop, one per bound listener, each connection handed on with
//! its listener's profile: a connection permit is taken before `accept` (so a full
//! proxy applies backpressure through the kernel's backlog instead of an
//! unbounded queue), one client (an IPv4 address, an IPv6 prefix) may hold
//! only so many connections unless it is exempt, each
//! client runs in its own task, and shutdown stops accepting, lets sessions
//! finish at their next command boundary within a grace period, then ends
//! the rest.

use crate::connection::{ListenerProfile, SharedState, serve_client};
pub mod proxy_protocol;
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
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Concurrent connections from one client (see [`crate::net::client_group`]).
    pub max_connections_per_client: usize,
    /// IPv6 clients are counted per prefix of this length.
    pub per_client_ipv6_prefix: u8,
    /// Clients in these networks are not counted per client (only against
    /// `max_connections`).
    pub per_client_exempt: Vec<ipnet::IpNet>,
    /// Time sessions get to finish after shutdown starts.
    pub shutdown_grace: Duration,
}

/// A bound listening socket and how its connections start and run.
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// Connections start with a PROXY protocol header naming the client.
    pub proxy_protocol: bool,
    /// Its name, TLS, host name and AUTH rules.
    pub profile: Arc<ListenerProfile>,
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
    let per_client = PerClient::new(
        limits.max_connections_per_client,
        limits.per_client_ipv6_prefix,
        limits.per_client_exempt,
    );
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
        state.metrics.connection(&listener.profile.identity.name);
        let state = state.clone();
        let per_client = per_client.clone();
        let session_stop = stop.clone();
        let proxy_protocol = listener.proxy_protocol;
        let profile = listener.profile.clone();
        sessions.spawn(async move {
            let mut stream = stream;
            let (client, server, input) = if proxy_protocol {
                match proxy_protocol::read_header(&mut stream, PROXY_HEADER_TIMEOUT).await {
                    Ok(header) => {
                        let (client, server) = header.addresses.unwrap_or((client, server));
                        (client, server, header.rest)
                    }
                    Err(e) => {
                        tracing::warn!(peer = %client, listener = %profile.identity.name, "connection refused: {e}");
                        return;
                    }
                }
            } else {
                (client, server, Vec::new())
            };
            let Some(slot) = per_client.claim(client.ip()) else {
                tracing::info!(client = %client, listener = %profile.identity.name, "too many connections from this address");
                let reply =
                    catalogue::too_many_connections_from_client(&profile.identity.hostname).to_bytes();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), stream.write_all(&reply)).await;
                return;
            };
            serve_client(stream, &input, client, server, profile, state, session_stop).await;
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

/// Open connections per client key (see [`crate::net::client_group`]).
type OpenCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Connections open per client, shared by every listener.
#[derive(Clone)]
struct PerClient {
    limit: usize,
    ipv6_prefix: u8,
    exempt: Arc<[ipnet::IpNet]>,
    open: OpenCounts,
}

impl PerClient {
    fn new(limit: usize, ipv6_prefix: u8, exempt: Vec<ipnet::IpNet>) -> Self {
        Self {
            limit,
            ipv6_prefix,
            exempt: exempt.into(),
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for one more connection from `ip`, or none when its client
    /// (its IPv6 prefix) is at the limit. Exempt clients always get one,
    /// which counts nothing.
    fn claim(&self, ip: IpAddr) -> Option<ClientSlot> {
        let ip = crate::net::canonical(ip);
        if self.exempt.iter().any(|net| net.contains(&ip)) {
            return Some(ClientSlot { counted: None });
        }
        let key = crate::net::client_group::group(ip, self.ipv6_prefix);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            counted: Some((key, self.open.clone())),
        })
    }
}

/// One open connection, counted against its client unless exempt;
/// released on drop.
struct ClientSlot {
    counted: Option<(IpAddr, OpenCounts)>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some((key, open)) = &self.counted else {
            return;
        };
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                open.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn per_client_slots_are_counted_and_released() {
        let per_client = PerClient::new(2, 64, Vec::new());
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

    #[test]
    fn ipv6_addresses_of_one_prefix_share_the_cap() {
        let per_client = PerClient::new(2, 64, Vec::new());
        let _a = per_client
            .claim("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        let b = per_client
            .claim("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap())
            .unwrap();
        assert!(
            per_client
                .claim("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none(),
            "a third address in the same /64 is over the cap"
        );
        assert!(
            per_client
                .claim("2001:db8:1:3::1".parse().unwrap())
                .is_some(),
            "the next /64 is another client"
        );
        drop(b);
        assert!(
            per_client
                .claim("2001:db8:1:2::77".parse().unwrap())
                .is_some()
        );

        // A shorter configured prefix groups more; /128 counts each address.
        let per_48 = PerClient::new(1, 48, Vec::new());
        let _c = per_48.claim("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(per_48.claim("2001:db8:1:ff::1".parse().unwrap()).is_none());
        let per_128 = PerClient::new(1, 128, Vec::new());
        let _d = per_128.claim("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(per_128.claim("2001:db8:1:2::2".parse().unwrap()).is_some());
    }

    #[test]
    fn exempt_clients_are_not_capped_and_others_still_are() {
        let per_client = PerClient::new(
            2,
            64,
            nets(&["127.0.0.0/8", "192.0.2.10/32", "2001:db8:aa::/48"]),
        );
        let exempt: Vec<ClientSlot> = (0..100)
            .map(|_| per_client.claim("192.0.2.10".parse().unwrap()).unwrap())
            .collect();
        let mapped: Vec<ClientSlot> = (0..100)
            .map(|_| {
                per_client
                    .claim("::ffff:127.0.0.1".parse().unwrap())
                    .unwrap()
            })
            .collect();
        let v6: Vec<ClientSlot> = (0..100)
            .map(|_| {
                per_client
                    .claim("2001:db8:aa:1::5".parse().unwrap())
                    .unwrap()
            })
            .collect();
        assert_eq!(
            per_client.open.lock().unwrap().len(),
            0,
            "exempt connections count nothing"
        );
        let _x = per_client.claim("192.0.2.11".parse().unwrap()).unwrap();
        let _y = per_client.claim("192.0.2.11".parse().unwrap()).unwrap();
        assert!(
            per_client.claim("192.0.2.11".parse().unwrap()).is_none(),
            "a neighbour of an exempt address is capped"
        );
        assert!(
            per_client
                .claim("2001:db8:ab::1".parse().unwrap())
                .is_some()
        );
        drop((exempt, mapped, v6));
        assert_eq!(per_client.open.lock().unwrap().len(), 1);
    }
}

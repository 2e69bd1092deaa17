//! The accept loop: a connection permit is taken before `accept` (so a full
//! proxy applies backpressure through the kernel's backlog instead of an
//! unbounded queue), each client runs in its own task, and shutdown stops
//! accepting, lets sessions finish at their next command boundary within a
//! grace period, then ends the rest.

use crate::proxy::{SharedState, serve_client};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Server-wide limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Time sessions get to finish after shutdown starts.
    pub shutdown_grace: Duration,
}

/// Accept clients on `listeners` until `shutdown` completes, then drain.
pub async fn run(
    listeners: Vec<TcpListener>,
    state: Arc<SharedState>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(
            listener,
            state.clone(),
            permits.clone(),
            stop_rx.clone(),
            limits.shutdown_grace,
        ));
    }
    shutdown.await;
    tracing::info!(
        "shutting down: no new connections, sessions finish within {:?}",
        limits.shutdown_grace
    );
    let _ = stop_tx.send(true);
    while accept_loops.join_next().await.is_some() {}
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<SharedState>,
    permits: Arc<Semaphore>,
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
            accepted = listener.accept() => accepted,
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
        let state = state.clone();
        let session_stop = stop.clone();
        sessions.spawn(async move {
            serve_client(stream, client, server, state, session_stop).await;
            drop(permit);
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

//! The admin endpoint (`[admin] listen`, meant for loopback): plain HTTP for
//! the operators' tools.
//!
//! - `GET /`: the status page ([`status_page`]): chains and module
//!   digests, reloads, sessions and rates, the last refusals and why.
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 once the listeners are bound and the policy is
//!   compiled, 503 again when shutdown starts.
//! - `GET /metrics`: Prometheus text exposition.
//! - `GET /status`: JSON: the policy serving new sessions, reload counters,
//!   active sessions.
//! - `POST /reload`: reload config and policy now (what SIGHUP does); 200
//!   with the new digest, or 500 with the reason the old policy kept serving.

pub mod status_page;

use crate::recent::{SAMPLE_EVERY, Totals};
use crate::reload::Reloader;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serve admin requests on `listener` until the task is dropped.
/// Counter snapshots for the status page's rates are taken meanwhile.
pub fn spawn(listener: TcpListener, reloader: Arc<Reloader>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let sampler = {
            let reloader = reloader.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(SAMPLE_EVERY);
                loop {
                    every.tick().await;
                    let metrics = reloader.metrics();
                    metrics
                        .recent
                        .sample(Totals::from_exposition(&metrics.encode()));
                }
            })
        };
        let _stop_sampler = AbortOnDrop(sampler);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let reloader = reloader.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let reloader = reloader.clone();
                    async move { Ok::<_, Infallible>(respond(request, &reloader).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Aborts the task when the admin endpoint's task ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn respond(request: Request<Incoming>, reloader: &Reloader) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => {
            let page = status_page::render(reloader);
            let mut response = Response::new(Full::new(Bytes::from(page)));
            let headers = response.headers_mut();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            // Nothing from elsewhere may run on or frame the page.
            headers.insert(
                hyper::header::CONTENT_SECURITY_POLICY,
                hyper::header::HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                ),
            );
            headers.insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-store"),
            );
            response
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if reloader.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (&Method::GET, "/metrics") => {
            let mut response = Response::new(Full::new(Bytes::from(reloader.metrics().encode())));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        (&Method::GET, "/status") => {
            let policy = reloader.current();
            let info = policy.info();
            let body = json!({
                "policy": {
                    "module": policy.name(),
                    "name": info.name,
                    "digest": policy.digest(),
                    "summary": info.summary,
                    "open_relay": info.open_relay,
                    "load_us": u64::try_from(policy.load_time().as_micros()).unwrap_or(u64::MAX),
                    "origin": format!("{:?}", policy.origin()).to_lowercase(),
                },
                "chains": chains_json(&reloader.chains()),
                "reloads": reloader.status(),
                "sessions": { "active": reloader.metrics().sessions_active.get() },
            });
            json_response(StatusCode::OK, &body)
        }
        (&Method::POST, "/reload") => match reloader.reload("admin").await {
            Ok(swapped) => {
                json_response(StatusCode::OK, &json!({ "ok": true, "swapped": swapped }))
            }
            Err(error) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "ok": false, "error": error }),
            ),
        },
        (_, "/" | "/healthz" | "/readyz" | "/metrics" | "/status" | "/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Every chain with its modules in order: name, mode, module and sha256.
fn chains_json(chains: &crate::policy::Chains) -> serde_json::Value {
    chains
        .all()
        .iter()
        .map(|chain| {
            let modules: Vec<_> = chain
                .modules
                .iter()
                .map(|m| {
                    json!({
                        "name": &*m.name,
                        "module": m.policy.name(),
                        "mode": match m.policy.settings().mode {
                            crate::config::PolicyMode::Enforce => "enforce",
                            crate::config::PolicyMode::DryRun => "dry-run",
                        },
                        "digest": m.policy.digest(),
                    })
                })
                .collect();
            json!({ "name": &*chain.name, "modules": modules })
        })
        .collect()
}

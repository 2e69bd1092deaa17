//! The micro-benchmark workloads, shared by the criterion benches
//! (`benches/micro.rs`, wall time) and the instruction-count guard
//! (`benches/callgrind.rs`, run under valgrind by `bench/callgrind.sh`).
//!
//! Each workload is built once ([`Workload::prepare`]) and then run one
//! iteration at a time ([`Workload::run_once`]); setup (compiling the policy,
//! the runtime) never counts.

#![allow(dead_code)] // each bench target uses a different part

pub mod native;

use relaygate::config::{Config, ModuleSource};
use relaygate::connection::client_io::ClientConnection;
use relaygate::hook::{ListenerIdentity, MessageSummary, PolicyContext, PolicyRequest};
use relaygate::policy::{
    BUILTIN_APPLE_RELAY_WASM, LoadedPolicy, PolicyEngine, PolicyInstance, PolicyServices,
};
use relaygate::smtp::Param;
use relaygate::smtp::command::parse_command;
use relaygate::smtp::data::DataChecker;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The `[policy.config]` every policy workload runs with: restricted relay
/// on, the bench client listed, one local domain (as `bench/compare.sh`).
pub const POLICY_TOML: &str = r#"
[proxy]
listen = ["127.0.0.1:2525"]
upstream = "127.0.0.1:25"
hostname = "bench.relaygate.test"

# Generous: under valgrind the guest runs ~50x slower than natively.
[policy]
call_timeout = "10s"

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.1", "192.0.2.0/24"]
local_domains = ["example.com"]
"#;

/// Every workload's name, in report order.
pub const NAMES: &[&str] = &[
    "parse/ehlo",
    "parse/mail-from",
    "parse/rcpt-to",
    "data/frame-100k",
    "hook/connect",
    "hook/helo",
    "hook/extensions",
    "hook/mail-from",
    "hook/rcpt-to",
    "hook/data",
    "native/rcpt-to",
    "instance/ready",
    "instance/first-hook",
    "swap/memory-cache",
    "swap/disk-cache",
];

/// The engine most workloads use: compiled code cached on disk in
/// `$RELAYGATE_BENCH_CACHE` when set (`bench/callgrind.sh` sets it so that
/// runs under valgrind do not compile the policy each time).
pub fn engine() -> PolicyEngine {
    PolicyEngine::new(std::env::var_os("RELAYGATE_BENCH_CACHE").map(PathBuf::from)).expect("engine")
}

/// A current-thread runtime, as cheap to enter as possible.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The bench configuration's policy settings and services.
pub fn policy_setup() -> (relaygate::config::PolicySettings, PolicyServices) {
    let config = Config::parse(POLICY_TOML).expect("bench config parses");
    let services = PolicyServices {
        config: config.policy.config.clone(),
        dns: None,
        own_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
        hostname: config.proxy.hostname.clone(),
    };
    (config.policy, services)
}

/// Compile the embedded default policy (memory cache only, or the disk
/// cache in `cache_dir`).
pub fn load_policy(rt: &tokio::runtime::Runtime, engine: &PolicyEngine) -> Arc<LoadedPolicy> {
    let (mut settings, services) = policy_setup();
    settings.module = ModuleSource::BuiltinAppleRelay;
    rt.block_on(engine.load(
        "builtin:apple-relay",
        BUILTIN_APPLE_RELAY_WASM,
        &settings,
        services,
    ))
    .expect("the default policy loads")
}

/// What a session knows after EHLO, MAIL FROM and one RCPT TO.
pub fn session_context() -> PolicyContext {
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let server: SocketAddr = "127.0.0.1:2525".parse().expect("address");
    let mut context = PolicyContext::connected(
        7,
        ListenerIdentity::new("smtp", "relay.test"),
        client,
        server,
        None,
    );
    context.helo = Some("client.bench.test".into());
    context.esmtp = true;
    context.sender = Some("bench@example.com".into());
    context.recipients = vec!["first@remote.example.net".into()];
    context
}

/// The request a hook workload sends.
pub fn hook_request(hook: &str) -> PolicyRequest {
    let size = Param {
        name: "SIZE".into(),
        value: Some("1024".into()),
    };
    match hook {
        "connect" => PolicyRequest::Connect,
        "helo" => PolicyRequest::Helo {
            name: "client.bench.test".into(),
            extended: true,
        },
        "extensions" => PolicyRequest::Extensions,
        "mail-from" => PolicyRequest::MailFrom {
            sender: "bench@example.com".into(),
            params: vec![size],
        },
        "rcpt-to" => PolicyRequest::RcptTo {
            recipient: "sink@remote.example.net".into(),
            params: Vec::new(),
        },
        "data" => PolicyRequest::Data(MessageSummary {
            size: 1024,
            headers: vec![
                ("From".into(), "bench@example.com".into()),
                ("To".into(), "sink@remote.example.net".into()),
                ("Subject".into(), "bench".into()),
                ("Message-Id".into(), "<1@client.bench.test>".into()),
            ],
            headers_truncated: false,
        }),
        other => panic!("no hook {other}"),
    }
}

/// A 100 KiB message as a client sends it (78-byte lines, one dot-stuffed),
/// followed by the end-of-data line.
pub fn message_100k() -> Vec<u8> {
    let mut message =
        b"From: bench@example.com\r\nTo: sink@remote.example.net\r\nSubject: bench\r\n\r\n"
            .to_vec();
    let line = [b'x'; 76];
    let mut n = 0;
    while message.len() < 100 * 1024 {
        if n == 100 {
            message.push(b'.');
        }
        message.extend_from_slice(&line);
        message.extend_from_slice(b"\r\n");
        n += 1;
    }
    message.extend_from_slice(b".\r\n");
    message
}

/// One prepared workload.
#[allow(clippy::large_enum_variant)] // one value per process, never moved in a loop
pub enum Workload {
    /// Parse one command line.
    Parse(&'static [u8]),
    /// Frame and check one 100 KiB message from the client buffer.
    Frame {
        /// The runtime the connection is read in.
        rt: tokio::runtime::Runtime,
        /// The message bytes.
        message: Vec<u8>,
    },
    /// One hook call on a warm instance.
    Hook {
        /// The runtime calls run in.
        rt: tokio::runtime::Runtime,
        /// The warm instance.
        instance: PolicyInstance,
        /// The session record.
        context: PolicyContext,
        /// The hook's request.
        request: PolicyRequest,
        /// Keeps the engine (and its epoch thread) alive.
        _engine: PolicyEngine,
    },
    /// The rcpt-to decision compiled natively.
    Native(native::NativePolicy),
    /// A new session's instance: instantiate (and optionally call connect).
    Instance {
        /// The runtime calls run in.
        rt: tokio::runtime::Runtime,
        /// The loaded policy.
        policy: Arc<LoadedPolicy>,
        /// Call the connect hook too.
        first_hook: bool,
        /// Keeps the engine alive.
        _engine: PolicyEngine,
    },
    /// Load the already compiled default policy again: from this engine's
    /// memory cache, or (a fresh engine each time) from the disk cache.
    Swap {
        /// The runtime loads run in.
        rt: tokio::runtime::Runtime,
        /// The engine, for the memory cache.
        engine: PolicyEngine,
        /// The disk cache, for a new engine each iteration.
        disk: Option<tempfile::TempDir>,
    },
}

impl Workload {
    /// Build the workload called `name` (one of [`NAMES`]).
    pub fn prepare(name: &str) -> Self {
        match name {
            "parse/ehlo" => Workload::Parse(b"EHLO client.bench.test"),
            "parse/mail-from" => {
                Workload::Parse(b"MAIL FROM:<bench@example.com> SIZE=1024 BODY=8BITMIME")
            }
            "parse/rcpt-to" => Workload::Parse(b"RCPT TO:<sink@remote.example.net>"),
            "data/frame-100k" => Workload::Frame {
                rt: runtime(),
                message: message_100k(),
            },
            "native/rcpt-to" => Workload::Native(native::NativePolicy::new()),
            "instance/ready" | "instance/first-hook" => {
                let rt = runtime();
                let engine = engine();
                let policy = load_policy(&rt, &engine);
                Workload::Instance {
                    rt,
                    policy,
                    first_hook: name == "instance/first-hook",
                    _engine: engine,
                }
            }
            "swap/memory-cache" => {
                let rt = runtime();
                let engine = engine();
                load_policy(&rt, &engine);
                Workload::Swap {
                    rt,
                    engine,
                    disk: None,
                }
            }
            "swap/disk-cache" => {
                let rt = runtime();
                let dir = tempfile::tempdir().expect("temporary directory");
                let engine = PolicyEngine::new(Some(dir.path().to_path_buf())).expect("engine");
                load_policy(&rt, &engine);
                Workload::Swap {
                    rt,
                    engine,
                    disk: Some(dir),
                }
            }
            hook if hook.starts_with("hook/") => {
                let rt = runtime();
                let engine = engine();
                let policy = load_policy(&rt, &engine);
                let mut instance = PolicyInstance::new(policy, 7);
                let context = session_context();
                // Warm: instantiate and let the guest read its settings.
                for warm in ["connect", "rcpt-to"] {
                    rt.block_on(instance.ask(&context, &hook_request(warm)));
                }
                let request = hook_request(&hook["hook/".len()..]);
                Workload::Hook {
                    rt,
                    instance,
                    context,
                    request,
                    _engine: engine,
                }
            }
            other => panic!("no workload {other}; known: {}", NAMES.join(" ")),
        }
    }

    /// Run one iteration.
    pub fn run_once(&mut self) {
        self.run(1);
    }

    /// Run `iterations` iterations. The async workloads run them inside one
    /// `block_on`, as a session makes its calls inside its own task: entering
    /// the runtime is not part of what a hook call costs.
    pub fn run(&mut self, iterations: u64) {
        match self {
            Workload::Parse(line) => {
                for _ in 0..iterations {
                    black_box(parse_command(black_box(line)).ok());
                }
            }
            Workload::Frame { rt, message } => rt.block_on(async {
                for _ in 0..iterations {
                    let (stream, _peer) = tokio::io::duplex(64);
                    let mut connection = ClientConnection::with_input(stream, message);
                    let mut checker = DataChecker::new(u64::MAX);
                    let chunk = connection
                        .read_data_chunk(Duration::from_secs(5), &mut checker)
                        .await
                        .expect("the whole message is buffered");
                    assert!(chunk.done);
                    black_box(connection.chunk_bytes(&chunk).len());
                }
            }),
            Workload::Hook {
                rt,
                instance,
                context,
                request,
                ..
            } => rt.block_on(async {
                for _ in 0..iterations {
                    let answer = instance.ask(context, request).await;
                    assert!(answer.failure.is_none(), "{:?}", answer.failure);
                    black_box(answer);
                }
            }),
            Workload::Native(policy) => {
                for _ in 0..iterations {
                    black_box(policy.rcpt_to(
                        black_box("127.0.0.1"),
                        None,
                        false,
                        black_box("sink@remote.example.net"),
                    ));
                }
            }
            Workload::Instance {
                rt,
                policy,
                first_hook,
                ..
            } => rt.block_on(async {
                for _ in 0..iterations {
                    let mut instance = PolicyInstance::new(policy.clone(), 9);
                    if *first_hook {
                        let answer = instance
                            .ask(&session_context(), &PolicyRequest::Connect)
                            .await;
                        assert!(answer.failure.is_none(), "{:?}", answer.failure);
                    } else {
                        instance.prepare().await.expect("instantiates");
                    }
                    black_box(instance);
                }
            }),
            Workload::Swap { rt, engine, disk } => {
                for _ in 0..iterations {
                    let engine = match disk {
                        Some(dir) => {
                            PolicyEngine::new(Some(PathBuf::from(dir.path()))).expect("engine")
                        }
                        None => engine.clone(),
                    };
                    black_box(load_policy(rt, &engine));
                }
            }
        }
    }
}

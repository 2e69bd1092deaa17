//! Per-language policy figures, side by side: component size, compile time,
//! instantiate time and per-hook call time (medians) for the default Rust
//! policy and each variant under `policies/` that has been built into
//! `target/policies/NAME.wasm` (`policies/build.sh`, or `bench/languages.sh`
//! which builds them and runs this).
//!
//! ```sh
//! bench/languages.sh
//! cargo bench -p relaygate --bench policy_languages   # variants already built
//! ```
//!
//! Each variant is loaded with the `[config]` of its own `cases.toml`, and
//! called with a session of a listed client, the way the proxy would.

use relaygate::config::{Config, ModuleSource, PolicyConfig};
use relaygate::hook::{ListenerIdentity, PolicyContext, PolicyRequest};
use relaygate::policy::{LoadedPolicy, PolicyEngine, PolicyInstance, PolicyServices};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A component to measure.
struct Subject {
    label: String,
    language: &'static str,
    bytes: Vec<u8>,
    config: toml::Table,
}

/// Medians of one subject.
struct Figures {
    size: usize,
    compile: Duration,
    instantiate: Duration,
    calls: Vec<(&'static str, Duration)>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host has a parent")
        .to_path_buf()
}

fn cases_config(path: &Path) -> toml::Table {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| table.get("config").and_then(|c| c.as_table()).cloned())
        .unwrap_or_default()
}

fn subjects() -> Vec<Subject> {
    let root = root();
    let mut subjects = vec![Subject {
        label: "apple-relay (default)".to_string(),
        language: "Rust",
        bytes: relaygate::policy::BUILTIN_APPLE_RELAY_WASM.to_vec(),
        config: cases_config(&root.join("policies/apple-relay/cases.toml")),
    }];
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // (file under target/policies, variant folder, language)
    for (file, name, language) in [
        ("submission", "submission", "Rust"),
        ("sender-domains", "sender-domains", "Python"),
        // The same Python policy built without --stub-wasi: what WASI costs.
        ("sender-domains-wasi", "sender-domains", "Python + WASI"),
        ("helo-sanity", "helo-sanity", "JavaScript"),
        ("recipient-limits", "recipient-limits", "C"),
        ("bounce-guard", "bounce-guard", "Zig"),
    ] {
        let wasm = target.join("policies").join(format!("{file}.wasm"));
        match std::fs::read(&wasm) {
            Ok(bytes) => subjects.push(Subject {
                label: file.to_string(),
                language,
                bytes,
                config: cases_config(&root.join("policies").join(name).join("cases.toml")),
            }),
            Err(_) => eprintln!(
                "skipping {file}: {} missing (run bench/languages.sh)",
                wasm.display()
            ),
        }
    }
    subjects
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

async fn load(engine: &PolicyEngine, subject: &Subject) -> anyhow::Result<Arc<LoadedPolicy>> {
    let config = Config::embedded_default();
    let policy_config = PolicyConfig::from_table(subject.config.clone())
        .map_err(|problems| anyhow::anyhow!(problems.join("; ")))?;
    let mut settings = config.policy.clone();
    settings.module = ModuleSource::File(PathBuf::from(&subject.label));
    settings.config = policy_config.clone();
    let services = PolicyServices {
        config: policy_config,
        dns: None,
        own_networks: vec!["127.0.0.0/8".to_string(), "::1/128".to_string()],
        hostname: "mx.example.com".to_string(),
    };
    Ok(engine
        .load(&subject.label, &subject.bytes, &settings, services)
        .await?)
}

fn context() -> PolicyContext {
    let client = SocketAddr::from(([127, 0, 0, 1], 40000));
    let server = SocketAddr::from(([127, 0, 0, 1], 25));
    let mut context = PolicyContext::connected(
        1,
        ListenerIdentity::new("smtp", "relay.test"),
        client,
        server,
        None,
    );
    context.helo = Some("client.example.com".to_string());
    context.esmtp = true;
    context.sender = Some("sender@example.com".to_string());
    context
}

/// The hooks measured, with the request each gets.
fn hooks() -> Vec<(&'static str, PolicyRequest)> {
    vec![
        ("connect", PolicyRequest::Connect),
        (
            "helo",
            PolicyRequest::Helo {
                name: "client.example.com".to_string(),
                extended: true,
            },
        ),
        (
            "mail-from",
            PolicyRequest::MailFrom {
                sender: "sender@example.com".to_string(),
                params: Vec::new(),
            },
        ),
        (
            "rcpt-to",
            PolicyRequest::RcptTo {
                recipient: "someone@example.org".to_string(),
                params: Vec::new(),
            },
        ),
    ]
}

async fn measure(engine: &PolicyEngine, subject: &Subject) -> anyhow::Result<Figures> {
    // Compile: big components (Python, JavaScript) take seconds, so fewer runs.
    let runs = if subject.bytes.len() > 1_000_000 {
        3
    } else {
        11
    };
    let mut compiles = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        engine.compile(&subject.bytes)?;
        compiles.push(started.elapsed());
    }
    let policy = load(engine, subject).await?;
    let mut instantiations = Vec::new();
    for id in 0..200 {
        let mut instance = PolicyInstance::new(policy.clone(), id);
        let started = Instant::now();
        instance
            .prepare()
            .await
            .map_err(|e| anyhow::anyhow!("instantiate: {e}"))?;
        instantiations.push(started.elapsed());
    }
    let context = context();
    let mut instance = PolicyInstance::new(policy, 1);
    let mut calls = Vec::new();
    for (hook, request) in hooks() {
        // Warm up (first calls initialise language runtimes), then measure.
        for _ in 0..20 {
            instance.ask(&context, &request).await;
        }
        let mut samples = Vec::new();
        for _ in 0..500 {
            let answer = instance.ask(&context, &request).await;
            if let Some(failure) = answer.failure {
                anyhow::bail!("{hook} failed: {failure}");
            }
            samples.push(answer.elapsed);
        }
        calls.push((hook, median(samples)));
    }
    Ok(Figures {
        size: subject.bytes.len(),
        compile: median(compiles),
        instantiate: median(instantiations),
        calls,
    })
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // we need: only run the measurement under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let engine = PolicyEngine::new(None)?;
    let mut rows = Vec::new();
    for subject in subjects() {
        eprintln!("measuring {} ({})...", subject.label, subject.language);
        match runtime.block_on(measure(&engine, &subject)) {
            Ok(figures) => rows.push((subject, figures)),
            Err(e) => eprintln!("{}: {e:#}", subject.label),
        }
    }
    println!(
        "| policy | language | size | compile | instantiate | connect | helo | mail-from | rcpt-to |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (subject, figures) in rows {
        let calls: Vec<String> = figures
            .calls
            .iter()
            .map(|(_, d)| format!("{} us", micros(*d)))
            .collect();
        println!(
            "| {} | {} | {} KiB | {} ms | {} us | {} |",
            subject.label,
            subject.language,
            figures.size.div_ceil(1024),
            figures.compile.as_millis(),
            micros(figures.instantiate),
            calls.join(" | ")
        );
    }
    Ok(())
}

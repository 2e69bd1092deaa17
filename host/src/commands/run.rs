//! `relaygate` (no subcommand): serve until SIGTERM/SIGINT; SIGHUP reloads.

use relaygate::app::App;
use relaygate::config::{Config, ConfigSource};
use tokio::signal::unix::{SignalKind, signal};

/// Run the proxy.
pub async fn run(source: ConfigSource, config: Config) -> anyhow::Result<()> {
    for problem in config.unworkable() {
        tracing::error!("CONFIG CANNOT WORK (relaygate check refuses it): {problem}");
    }
    for note in config.warnings() {
        tracing::warn!("{note}");
    }
    let app = App::build(source, &config).await?;
    let policy = app.policy();
    let info = policy.info();
    tracing::info!(
        listeners = %config
            .listeners()
            .iter()
            .map(|l| format!("{}={}", l.name, l.address))
            .collect::<Vec<_>>()
            .join(", "),
        upstream = %config.proxy.upstream,
        admin = ?app.admin_addr(),
        policy = policy.name(),
        digest = policy.digest(),
        load_ms = policy.load_time().as_millis() as u64,
        "relaygate ready: {}",
        info.summary
    );
    if !config.chain_tables.is_empty() {
        for chain in app.chains().all() {
            for (at, module) in chain.modules.iter().enumerate() {
                tracing::info!(
                    chain = %chain.name,
                    position = at + 1,
                    module = %module.name,
                    source = module.policy.name(),
                    mode = ?module.policy.settings().mode,
                    digest = module.policy.digest(),
                    "chain module: {}",
                    module.policy.info().summary
                );
            }
        }
    }
    for chain in app.chains().open_relays(&config.chains_in_use()) {
        tracing::warn!(
            "OPEN RELAY: as configured, the policy lets ANY client relay mail to ANY domain{chain}"
        );
    }
    // systemd (Type=notify): ready only now, with listeners bound and the
    // policy compiled. Without NOTIFY_SOCKET this does nothing.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let reloader = app.reloader();
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let _ = reloader.reload("SIGHUP").await;
        }
    });
    app.run(shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

//! `relaygate check`: validate the config and every policy chain, print the
//! effective mode, each chain's modules and each listener's chain.

use relaygate::app::describe_networks;
use relaygate::config::Config;
use relaygate::config::{DEFAULT_CHAIN, PolicyMode};
use relaygate::net::client_group;
use relaygate::policy::{PolicyEngine, load_chains};
use relaygate::upstream::UpstreamTls;

/// `relaygate check`: everything `run` checks, without serving.
pub async fn check(config: &Config) -> anyhow::Result<()> {
    let engine = PolicyEngine::new(config.policy.cache_dir.clone())?;
    let chains = load_chains(&engine, config, None, None).await?;
    let policy = chains.default_chain().modules[0].policy.clone();
    let info = policy.info();
    let source = config.source.as_ref().map_or_else(
        || "embedded default".to_string(),
        |p| p.display().to_string(),
    );
    println!("config:    {source}: OK");
    for listener in config.listeners() {
        println!(
            "listener:  {} chain={}",
            config.describe_listener(&listener),
            listener.chain
        );
    }
    // The CA file and name must make a TLS client, as they will at start.
    UpstreamTls::from_config(&config.upstream_tls)?;
    let fallbacks = match config.proxy.upstream_fallbacks.as_slice() {
        [] => String::new(),
        list => format!(" (then {})", list.join(", ")),
    };
    println!(
        "upstream:  {}{fallbacks}{}",
        config.proxy.upstream,
        config.upstream_tls.describe()
    );
    println!("hostname:  {}", config.proxy.hostname);
    println!(
        "limits:    max_message_size {} bytes, max_recipients {}",
        config.proxy.max_message_size, config.proxy.max_recipients
    );
    let exempt = client_group::exempt_or_own(config.proxy.per_client_exempt.as_deref());
    println!(
        "clients:   max_connections {}, {} per client (IPv6 per /{}), not capped per client: {}",
        config.proxy.max_connections,
        config.proxy.max_connections_per_client,
        config.proxy.per_client_ipv6_prefix,
        describe_networks(&exempt)
    );
    let in_use = config.chains_in_use();
    if in_use.iter().any(|name| name == DEFAULT_CHAIN) {
        println!(
            "policy:    {} ({}), sha256 {}",
            policy.name(),
            info.name,
            policy.digest()
        );
        println!("mode:      {}", info.summary);
    } else {
        println!("policy:    no listener asks the chain default: each asks its own");
    }
    for chain in chains.all() {
        let asked_by: Vec<String> = config
            .listeners()
            .into_iter()
            .filter(|listener| *listener.chain == *chain.name)
            .map(|listener| listener.name)
            .collect();
        let asked_by = if asked_by.is_empty() {
            "no listener: serves no one".to_string()
        } else {
            asked_by.join(", ")
        };
        println!("chain:     {} (asked by {asked_by})", chain.name);
        for (at, module) in chain.modules.iter().enumerate() {
            let mode = match module.policy.settings().mode {
                PolicyMode::Enforce => "enforce",
                PolicyMode::DryRun => "dry-run",
            };
            println!(
                "  {}. {} {} ({}) mode={mode} sha256 {}",
                at + 1,
                module.name,
                module.policy.name(),
                module.policy.info().name,
                module.policy.digest()
            );
            println!("     {}", module.policy.info().summary);
        }
    }
    print_state(config).await;
    for warning in config.warnings() {
        println!("WARNING:   {warning}");
    }
    for chain in chains.open_relays(&config.chains_in_use()) {
        println!("WARNING:   OPEN RELAY: any client may relay mail to any domain{chain}");
    }
    Ok(())
}

/// The `[state]` backend, and for Redis whether it answers now (a proxy
/// starts without it; its stateful policies then tempfail).
async fn print_state(config: &Config) {
    use relaygate::config::StateBackendKind;
    match relaygate::state::StateStore::from_config(&config.state) {
        Ok(store) => match config.state.backend {
            StateBackendKind::Memory => println!("state:     {}", store.describe()),
            StateBackendKind::Redis { .. } => match store.ping().await {
                Ok(()) => println!("state:     {} (answers)", store.describe()),
                Err(e) => println!("WARNING:   state {} does not answer: {e}", store.describe()),
            },
        },
        Err(e) => println!("WARNING:   state: {e:#}"),
    }
}

//! Running relaygate in-process for a test: the real [`relaygate::app::App`]
//! on a loopback port, configured from TOML text, stopped when dropped.

use relaygate::app::{App, bind_listener};
use relaygate::config::{Config, ConfigSource};
use relaygate::connection::ListenerProfile;
use relaygate::listener::Listener;
use relaygate::reload::Reloader;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The misbehaving fixture policy (built by `cargo xtask guests`): accepts
/// unless its config says otherwise.
pub fn misbehaving_wasm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/misbehaving.wasm")
}

/// The same fixture built to reject recipients unless its config says
/// otherwise: a second module that accepts the same config and disagrees.
pub fn misbehaving_reject_wasm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/misbehaving-reject.wasm")
}

/// A running proxy.
pub struct TestProxy {
    addr: SocketAddr,
    addr_v6: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    proxy_protocol: Option<SocketAddr>,
    named: HashMap<String, SocketAddr>,
    reloader: Arc<Reloader>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// Start relaygate with `config` (TOML; `[proxy] listen` is ignored, the
    /// proxy listens on 127.0.0.1 on a free port, and `[admin] listen`,
    /// `proxy_protocol_listen` and each `[[listener]]` likewise on free
    /// ports when present: see [`TestProxy::listener_addr`]). Use `{upstream}` in the
    /// text where the upstream address belongs.
    pub async fn start(config: &str, upstream: SocketAddr) -> anyhow::Result<Self> {
        let text = config.replace("{upstream}", &upstream.to_string());
        let config =
            Config::parse(&text).map_err(|e| anyhow::anyhow!("test config refused:\n{e}"))?;
        Self::start_with(config).await
    }

    /// Start relaygate with a validated config.
    pub async fn start_with(config: Config) -> anyhow::Result<Self> {
        Self::launch(ConfigSource::default(), config).await
    }

    /// Start relaygate from a config file, as `relaygate --config FILE`
    /// does (so reloads read the file again). `[proxy] listen` is ignored;
    /// `[admin] listen`, if set, is bound on 127.0.0.1 at a free port.
    pub async fn start_from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let source = ConfigSource {
            path: Some(path.to_path_buf()),
            ..ConfigSource::default()
        };
        let config = source
            .load(&relaygate::tls::check)
            .map_err(|e| anyhow::anyhow!("test config refused:\n{e}"))?;
        Self::launch(source, config).await
    }

    async fn launch(source: ConfigSource, config: Config) -> anyhow::Result<Self> {
        let listener = bind_listener("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let smtp = Arc::new(ListenerProfile::plain(
            "smtp",
            &config.proxy.hostname,
            config.auth.as_ref().is_none_or(|auth| auth.require_tls),
        ));
        let plain = |socket| Listener {
            socket,
            proxy_protocol: false,
            profile: smtp.clone(),
        };
        let mut listeners = vec![plain(listener)];
        // IPv6 loopback too, where the machine has it.
        let addr_v6 = match bind_listener("[::1]:0".parse()?) {
            Ok(v6) => {
                let addr = v6.local_addr()?;
                listeners.push(plain(v6));
                Some(addr)
            }
            Err(_) => None,
        };
        let admin = match config.admin_listen {
            Some(_) => Some(bind_listener("127.0.0.1:0".parse()?)?),
            None => None,
        };
        // One PROXY-protocol listener when the config asks for any.
        let proxy_protocol = match config.proxy.proxy_protocol_listen.first() {
            Some(_) => {
                let socket = bind_listener("127.0.0.1:0".parse()?)?;
                let addr = socket.local_addr()?;
                let mut profile = ListenerProfile::clone(&smtp);
                profile.identity.name = "proxy".into();
                listeners.push(Listener {
                    socket,
                    proxy_protocol: true,
                    profile: Arc::new(profile),
                });
                Some(addr)
            }
            None => None,
        };
        // Each `[[listener]]` on a free port of its own, with its settings.
        let mut named = HashMap::new();
        for listener in &config.listener_tables {
            let socket = bind_listener("127.0.0.1:0".parse()?)?;
            named.insert(listener.name.clone(), socket.local_addr()?);
            listeners.push(Listener {
                socket,
                proxy_protocol: listener.proxy_protocol,
                profile: Arc::new(ListenerProfile::of(listener)),
            });
        }
        let app = App::assemble(source, &config, listeners, admin).await?;
        let admin = app.admin_addr();
        let reloader = app.reloader();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            addr_v6,
            admin,
            proxy_protocol,
            named,
            reloader,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the admin endpoint listens, if the config has `[admin]`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The listener that expects a PROXY protocol header, if the config
    /// has `proxy_protocol_listen`.
    pub fn proxy_protocol_addr(&self) -> Option<SocketAddr> {
        self.proxy_protocol
    }

    /// Where the `[[listener]]` table named `name` listens.
    pub fn listener_addr(&self, name: &str) -> SocketAddr {
        *self
            .named
            .get(name)
            .unwrap_or_else(|| panic!("no [[listener]] named {name:?}"))
    }

    /// The proxy's reloader (what SIGHUP and the admin endpoint call).
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Where IPv6 clients connect ([::1]), if the machine has IPv6 loopback.
    pub fn addr_v6(&self) -> Option<SocketAddr> {
        self.addr_v6
    }

    /// Ask the proxy to shut down (SIGTERM's path) without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Wait until the proxy has stopped (after [`TestProxy::begin_shutdown`]).
    pub async fn stopped(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Ask the proxy to shut down and wait until it has.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

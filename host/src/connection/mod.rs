//! Runs one client connection as its listener's [`ListenerProfile`] says
//! (on an implicit-TLS listener, the TLS handshake first): reads commands
//! from the [`ClientConnection`] ([`client_io`]), feeds the sans-IO
//! [`Session`], and performs the actions it asks for (policy calls,
//! upstream steps, replies).

pub mod client_io;
mod decisions;
mod profile;
mod transcript;

pub use profile::ListenerProfile;
use transcript::{Answered, Transcript};

use crate::config::PolicyMode;
use crate::config::{ListenerAuth, ListenerTls};
use crate::credentials::{Authenticator, Credentials, Verification};
use crate::dns::Dns;
use crate::hook::{Decision, Hook, MessageSummary, PolicyContext, PolicyRequest};
use crate::metrics::Metrics;
use crate::policy::{
    AskModule, ChainVerdict, Chains, PolicyAnswer, PolicyChain, PolicyInstance, ask_in_order,
};
use crate::session::sasl::{AuthAttempt, CredentialCheck};
use crate::session::{
    Action, Capabilities, DataOutcome, Session, SessionLimits, UpstreamProblem, UpstreamStep,
};
use crate::smtp::data::DataChecker;
use crate::smtp::reply::catalogue;
use crate::smtp::{Command, CommandError, Reply, parse_command};
use crate::tls::ClientStream;
use crate::upstream::{ClientIdentity, Upstream, UpstreamError, UpstreamPool};
use client_io::{ClientConnection, CommandLine, ConnectionError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;
use zeroize::Zeroizing;

/// What every session of a running proxy shares.
pub struct SharedState {
    /// Our host name.
    pub hostname: String,
    /// Session limits.
    pub limits: SessionLimits,
    /// Errors after which each error reply is delayed by `error_sleep`.
    pub soft_error_limit: u32,
    /// The delay of each error reply past `soft_error_limit`.
    pub error_sleep: Duration,
    /// Command timeout: also how long the client may take to accept a
    /// write of ours.
    pub command_timeout: Duration,
    /// Data timeout.
    pub data_timeout: Duration,
    /// Longest session.
    pub max_session_duration: Duration,
    /// Pre-greeting wait for early talkers (zero: none).
    pub early_talker_delay: Duration,
    /// The policy chains new sessions are pinned to (each session takes
    /// its listener's chain when it starts).
    pub chains: arc_swap::ArcSwap<Chains>,
    /// The resolver for client names.
    pub dns: Option<Dns>,
    /// How to reach the upstream, and the connections kept for reuse.
    pub upstream: Arc<UpstreamPool>,
    /// Session id counter.
    pub next_session: AtomicU64,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Listeners bound and policy compiled, not shutting down (`/readyz`).
    pub ready: AtomicBool,
    /// The TLS acceptor from `[tls]` (STARTTLS and implicit TLS), replaced
    /// on reload; new sessions take the one current when they start.
    pub tls: arc_swap::ArcSwapOption<TlsAcceptor>,
    /// The credential checker from `[auth]`.
    pub auth: Option<Arc<Authenticator>>,
}

/// Counts a session as active while it lives.
struct ActiveSession<'a>(&'a Metrics);

impl<'a> ActiveSession<'a> {
    fn enter(metrics: &'a Metrics) -> Self {
        metrics.sessions_active.inc();
        Self(metrics)
    }
}

impl Drop for ActiveSession<'_> {
    fn drop(&mut self) {
        self.0.sessions_active.dec();
    }
}

/// Serve one client of the listener `profile` describes until it quits,
/// times out or the proxy shuts down. On an implicit-TLS listener the
/// handshake comes first, within the command timeout; one that fails is
/// logged and counted, and the connection closed.
pub async fn serve_client<S>(
    stream: S,
    input: &[u8],
    client: SocketAddr,
    server: SocketAddr,
    profile: Arc<ListenerProfile>,
    state: Arc<SharedState>,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let id = state.next_session.fetch_add(1, Ordering::Relaxed);
    let chain = chain_for(&state, &profile.chain);
    let span = tracing::info_span!("session", id, listener = %profile.identity.name, client = %client, server = %server, chain = %chain.name, modules = %chain.module_digests(), policy = %short_digest(chain.modules[0].policy.digest()));
    async move {
        let acceptor = state.tls.load_full();
        let start = SessionStart {
            id,
            client,
            server,
            chain,
            profile,
            state,
            shutdown,
        };
        if start.profile.tls != ListenerTls::Implicit {
            let starttls = acceptor.filter(|_| start.profile.tls == ListenerTls::Starttls);
            return start
                .run(ClientStream::Plain(stream), input, starttls)
                .await;
        }
        let Some(acceptor) = acceptor else {
            tracing::warn!("implicit-TLS listener without a [tls] certificate: connection closed");
            start
                .state
                .metrics
                .tls_handshake_failure(&start.profile.identity.name);
            return;
        };
        let stream = crate::tls::Prefixed::new(input, stream);
        let mut shutdown = start.shutdown.clone();
        let handshake = tokio::select! {
            handshake = crate::tls::handshake(&acceptor, stream, start.state.command_timeout) => handshake,
            _ = shutdown.changed() => {
                tracing::debug!("shutting down: TLS handshake at connect abandoned");
                return;
            }
        };
        match handshake {
            Ok(stream) => {
                tracing::debug!("TLS established at connect");
                start
                    .run(ClientStream::Tls(Box::new(stream)), &[], None)
                    .await;
            }
            Err(e) => {
                tracing::info!("TLS handshake at connect failed: {e}");
                start
                    .state
                    .metrics
                    .tls_handshake_failure(&start.profile.identity.name);
            }
        }
    }
    .instrument(span)
    .await
}

/// What a session starts from, whatever its stream.
struct SessionStart {
    id: u64,
    client: SocketAddr,
    server: SocketAddr,
    chain: Arc<PolicyChain>,
    profile: Arc<ListenerProfile>,
    state: Arc<SharedState>,
    shutdown: watch::Receiver<bool>,
}

impl SessionStart {
    /// Run the session on `stream` (under TLS already, or in clear with
    /// `starttls` the acceptor STARTTLS may use), `input` read before it.
    async fn run<S>(self, stream: ClientStream<S>, input: &[u8], starttls: Option<Arc<TlsAcceptor>>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let Self {
            id,
            client,
            server,
            chain,
            profile,
            state,
            shutdown,
        } = self;
        let _active = ActiveSession::enter(&state.metrics);
        let client_name = match state.dns.clone().filter(|_| chain.needs_client_name()) {
            Some(dns) => lookup_client_name(dns, client).await,
            None => None,
        };
        let mut context =
            PolicyContext::connected(id, profile.identity.clone(), client, server, client_name);
        context.tls = stream.is_tls();
        let capabilities = Capabilities {
            smtputf8: state.upstream.settings().smtputf8.load(Ordering::Relaxed),
            auth: state.auth.is_some() && profile.auth != ListenerAuth::Off,
            auth_requires_tls: profile.auth_requires_tls,
            starttls: starttls.is_some(),
            auth_required: profile.auth == ListenerAuth::Required,
        };
        let session = Session::new(
            profile.identity.hostname.to_string(),
            state.limits.clone(),
            capabilities,
            context,
        );
        let mut driver = Driver {
            deadline: tokio::time::Instant::now() + state.max_session_duration,
            transcript: Transcript::default(),
            answering: Answered::Other,
            conn: ClientConnection::with_input(stream, input)
                .with_write_timeout(state.command_timeout),
            tls: starttls,
            hostname: profile.identity.hostname.clone(),
            session,
            policies: chain
                .modules
                .iter()
                .map(|m| (m.name.clone(), PolicyInstance::new(m.policy.clone(), id)))
                .collect(),
            upstream: None,
            state: state.clone(),
            shutdown,
        };
        tracing::debug!("connected");
        // The soft limit closes the session at a command boundary; this hard
        // one ends a session stuck mid-message (the upstream copy is dropped).
        let hard_limit = state.max_session_duration + state.data_timeout;
        if tokio::time::timeout(hard_limit, driver.run())
            .await
            .is_err()
        {
            tracing::info!("session exceeded its lifetime mid-transaction; closed");
            driver.upstream = None;
        }
        driver.transcript.abandon(&state.metrics);
        if let Some(upstream) = driver.upstream.take() {
            state.upstream.release(upstream).await;
        }
        tracing::debug!("disconnected");
    }
}

/// The client's confirmed reverse name; lookup failures mean no name.
async fn lookup_client_name(dns: Dns, client: SocketAddr) -> Option<String> {
    dns.confirmed_name(client.ip()).await.unwrap_or_else(|e| {
        tracing::debug!("reverse lookup failed: {e}");
        None
    })
}

fn short_digest(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// What reading a line from the client gave.
enum Read {
    /// A line without its ending.
    Line(Vec<u8>),
    /// An over-long line, skipped.
    TooLong,
    /// The session must end (timeout, shutdown, lifetime) with this action.
    Ended(Action),
    /// The client is gone.
    Gone,
}

struct Driver<S> {
    deadline: tokio::time::Instant,
    transcript: Transcript,
    answering: Answered,
    conn: ClientConnection<ClientStream<S>>,
    tls: Option<Arc<TlsAcceptor>>,
    /// Our name towards this client (the listener's).
    hostname: Arc<str>,
    session: Session,
    /// One instance per module of the session's chain, in chain order.
    policies: Vec<(Arc<str>, PolicyInstance)>,
    upstream: Option<Upstream>,
    state: Arc<SharedState>,
    shutdown: watch::Receiver<bool>,
}

/// Ask one chain module, count and trace its answer as its own, and add it
/// to `verdict`.
/// Asks a live session's chain modules, counting and tracing each answer
/// as its module's.
struct LiveAsker<'a> {
    metrics: &'a Metrics,
    context: &'a PolicyContext,
}

impl AskModule<PolicyInstance> for LiveAsker<'_> {
    async fn ask(
        &mut self,
        name: &Arc<str>,
        instance: &mut PolicyInstance,
        request: &PolicyRequest,
    ) -> (PolicyMode, PolicyAnswer) {
        let policy = instance.policy().clone();
        let answer = instance.ask(self.context, request).await;
        decisions::apply(self.metrics, name, &policy, self.context, request, &answer);
        (policy.settings().mode, answer)
    }
}

/// The chain `name` as it is now; the default chain (with a warning) when
/// a reload has removed it since the listener was bound.
fn chain_for(state: &SharedState, name: &str) -> Arc<PolicyChain> {
    let chains = state.chains.load();
    chains.get(name).unwrap_or_else(|| {
        tracing::warn!(
            chain = name,
            "no such policy chain any more; using the default chain"
        );
        chains.default_chain().clone()
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Driver<S> {
    /// Ask the chain's modules in order until an enforcing one refuses
    /// (README.md, "Policy chains"); each answer counted and traced as its
    /// module's.
    async fn ask_chain(&mut self, request: PolicyRequest) -> ChainVerdict {
        let mut asker = LiveAsker {
            metrics: &self.state.metrics,
            context: self.session.context(),
        };
        ask_in_order(&mut self.policies, request, &mut asker).await
    }

    async fn run(&mut self) {
        let delay = self.state.early_talker_delay;
        if !delay.is_zero() && self.conn.talks_within(delay).await {
            tracing::info!("client talked before the greeting");
            self.conn.queue(&catalogue::early_talker().to_bytes());
            self.flush().await;
            return;
        }
        let mut action = self.session.start();
        loop {
            action = match action {
                Action::Ask(request) => {
                    let hook = request.hook();
                    let verdict = self.ask_chain(request).await;
                    if let Some(module) = verdict.decided_by() {
                        self.transcript.refused_by(hook.name(), module);
                    }
                    let decision = verdict.decision().clone();
                    if hook == Hook::Auth {
                        if decision == Decision::Accept {
                            // The upstream learns the identity in XCLIENT when
                            // a connection opens: the next MAIL opens a new one.
                            self.close_upstream().await;
                        } else {
                            tracing::info!("AUTH refused by the policy");
                            self.state.metrics.auth_failures.inc();
                        }
                    }
                    self.session.policy_answered(decision, verdict.offer())
                }
                Action::Upstream(step) => self.upstream_step(&step).await,
                Action::Reply(reply) => {
                    if let Some(delay) = self.error_delay(&reply) {
                        tokio::time::sleep(delay).await;
                    }
                    self.transcript
                        .answered(&self.answering, &reply, &self.state.metrics);
                    self.conn.queue(&reply.to_bytes());
                    match self.next_command().await {
                        Some(next) => next,
                        None => return,
                    }
                }
                Action::Close(reply) => {
                    self.transcript.abandon(&self.state.metrics);
                    let errors = self.session.errors();
                    if errors >= self.state.limits.max_errors {
                        tracing::info!(errors, "too many errors; session closed");
                        self.state.metrics.error_limit_closes.inc();
                    }
                    self.conn.queue(&reply.to_bytes());
                    self.flush().await;
                    return;
                }
                Action::ReceiveData(reply) => {
                    self.transcript.data_started();
                    self.conn.queue(&reply.to_bytes());
                    if !self.flush().await {
                        return;
                    }
                    match self.receive_data().await {
                        Ok(_)
                            if self
                                .upstream
                                .as_ref()
                                .is_some_and(Upstream::write_timed_out) =>
                        {
                            // Logged and counted when it happened; the
                            // client has now sent its whole message.
                            self.upstream = None;
                            self.session.close_with(catalogue::timeout(&self.hostname))
                        }
                        Ok(outcome) => self.session.data_received(outcome),
                        Err(ConnectionError::Timeout) => {
                            self.upstream = None;
                            self.session.close_with(catalogue::timeout(&self.hostname))
                        }
                        Err(_) => {
                            // The client vanished mid-message: drop the upstream
                            // connection so the partial message is discarded.
                            self.upstream = None;
                            return;
                        }
                    }
                }
                Action::AbortUpstream(reply) => {
                    self.upstream = None;
                    Action::Reply(reply)
                }
                Action::AuthChallenge(reply) => {
                    self.answering = Answered::Other;
                    self.conn.queue(&reply.to_bytes());
                    match self.read_line().await {
                        Read::Line(line) => {
                            let line = Zeroizing::new(line);
                            self.session.auth_response(&line)
                        }
                        Read::TooLong => self.session.line_too_long(),
                        Read::Ended(action) => action,
                        Read::Gone => return,
                    }
                }
                Action::VerifyCredentials(attempt) => match self.verify(attempt).await {
                    Some(check) => self.session.credentials_checked(check),
                    None => return,
                },
                Action::StartTls(reply) => {
                    self.conn.queue(&reply.to_bytes());
                    if !self.flush().await || !self.start_tls().await {
                        return;
                    }
                    self.session.tls_started();
                    // What the upstream was told in clear (HELO) no longer holds.
                    self.close_upstream().await;
                    match self.next_command().await {
                        Some(next) => next,
                        None => return,
                    }
                }
            };
        }
    }

    /// Send the queued replies; false when the client is gone or did not
    /// take them within the command timeout (logged and counted).
    async fn flush(&mut self) -> bool {
        match self.conn.flush().await {
            Ok(()) => true,
            Err(error) => {
                self.client_lost(&error);
                false
            }
        }
    }

    /// Log and count a client that stopped reading what we write.
    fn client_lost(&self, error: &ConnectionError) {
        if matches!(error, ConnectionError::WriteTimeout) {
            tracing::info!(
                timeout = ?self.state.command_timeout,
                "client did not read its replies in time; session ended"
            );
            self.state.metrics.write_timeout("client");
        }
    }

    /// Past the soft error limit each error reply waits (Postfix's
    /// `smtpd_error_sleep_time`): probing recipients or relay gets slow
    /// long before the hard limit ends the session.
    /// (Not an `async fn` on `&self`: the driver is not `Sync`.)
    fn error_delay(&self, reply: &Reply) -> Option<Duration> {
        (reply.code() >= 400
            && self.session.errors() > self.state.soft_error_limit
            && !self.state.error_sleep.is_zero())
        .then_some(self.state.error_sleep)
    }

    /// Give back the idle upstream connection, if any (between
    /// transactions): the next MAIL takes one introduced afresh.
    async fn close_upstream(&mut self) {
        if let Some(upstream) = self.upstream.take() {
            self.state.upstream.release(upstream).await;
        }
    }

    /// After STARTTLS's 220: forget what the client pipelined in clear, then
    /// run the handshake. False when the connection is lost.
    async fn start_tls(&mut self) -> bool {
        let discarded = self.conn.discard_input();
        if discarded > 0 {
            tracing::warn!(
                bytes = discarded,
                "client sent data behind STARTTLS before the handshake; discarded"
            );
        }
        let Some(acceptor) = self.tls.clone() else {
            return false;
        };
        let ClientStream::Plain(plain) =
            std::mem::replace(self.conn.stream_mut(), ClientStream::Gone)
        else {
            return false;
        };
        match crate::tls::handshake(&acceptor, plain, self.state.command_timeout).await {
            Ok(stream) => {
                *self.conn.stream_mut() = ClientStream::Tls(Box::new(stream));
                tracing::debug!("TLS established");
                true
            }
            Err(e) => {
                tracing::info!("TLS handshake failed: {e}");
                false
            }
        }
    }

    /// Ask the credential backend; the password is dropped (zeroized) here.
    /// `None`: the client left while the check ran; the check is abandoned
    /// (a hash not yet started never starts) and counts against the client.
    async fn verify(&mut self, attempt: AuthAttempt) -> Option<CredentialCheck> {
        let Some(auth) = self.state.auth.clone() else {
            return Some(CredentialCheck::Unavailable);
        };
        let mechanism = attempt.mechanism.name();
        let credentials = Credentials::new(attempt.user, attempt.password);
        let client = crate::net::canonical(self.session.context().client.ip());
        let verification = tokio::select! {
            // The client first: a check woken (given its slot) after its
            // client left must not start.
            biased;
            () = self.conn.closed() => {
                tracing::info!(user = %credentials.user, mechanism, "client left during its AUTH check: check abandoned");
                return None;
            }
            verification = auth.verify(client, &credentials) => verification,
        };
        Some(match verification {
            Verification::Accepted => CredentialCheck::Accepted,
            Verification::Rejected => {
                self.state.metrics.auth_failures.inc();
                tracing::info!(user = %credentials.user, mechanism, "AUTH failed: invalid credentials");
                CredentialCheck::Rejected
            }
            Verification::Throttled { retry_after } => {
                self.state.metrics.auth_failures.inc();
                self.state.metrics.auth_throttled.inc();
                tracing::info!(user = %credentials.user, mechanism, ?retry_after, "AUTH throttled");
                CredentialCheck::Throttled
            }
            Verification::Unavailable { reason } => {
                self.state.metrics.auth_unavailable.inc();
                tracing::warn!(user = %credentials.user, mechanism, %reason, "AUTH backend unavailable");
                CredentialCheck::Unavailable
            }
        })
    }

    /// Read the next line within the command deadline (or learn that the
    /// session must end).
    async fn read_line(&mut self) -> Read {
        if *self.shutdown.borrow() {
            return Read::Ended(
                self.session
                    .close_with(catalogue::shutting_down(&self.hostname)),
            );
        }
        let now = tokio::time::Instant::now();
        if now >= self.deadline {
            let reply = catalogue::session_too_long(&self.hostname);
            return Read::Ended(self.session.close_with(reply));
        }
        let timeout = self.state.command_timeout.min(self.deadline - now);
        let read = tokio::select! {
            read = self.conn.read_command(timeout) => read,
            _ = self.shutdown.changed() => {
                return Read::Ended(self.session.close_with(catalogue::shutting_down(&self.hostname)));
            }
        };
        match read {
            Ok(CommandLine::Line(line)) => Read::Line(line),
            Ok(CommandLine::TooLong) => Read::TooLong,
            Err(ConnectionError::Timeout) => {
                Read::Ended(self.session.close_with(catalogue::timeout(&self.hostname)))
            }
            Err(error) => {
                self.client_lost(&error);
                Read::Gone
            }
        }
    }

    /// Read and parse the next command; None when the client is gone.
    async fn next_command(&mut self) -> Option<Action> {
        match self.read_line().await {
            Read::Line(line) => {
                let command = parse_command(&line);
                self.answering = match &command {
                    Ok(Command::Mail { path, .. }) => Answered::Mail(path.clone()),
                    Ok(Command::Rcpt { path, .. }) => Answered::Rcpt(path.clone()),
                    // A UTF-8 recipient, which an SMTPUTF8 transaction accepts.
                    Err(CommandError::NeedsSmtpUtf8(command)) => match command.as_ref() {
                        Command::Rcpt { path, .. } => Answered::Rcpt(path.clone()),
                        _ => Answered::Other,
                    },
                    Ok(Command::Data) => Answered::Data,
                    Ok(Command::Rset | Command::Helo(_) | Command::Ehlo(_) | Command::Quit) => {
                        Answered::Reset
                    }
                    _ => Answered::Other,
                };
                Some(self.session.command(command))
            }
            Read::TooLong => Some(self.session.line_too_long()),
            Read::Ended(action) => Some(action),
            Read::Gone => None,
        }
    }

    async fn receive_data(&mut self) -> Result<DataOutcome, ConnectionError> {
        let mut checker = DataChecker::new(self.state.limits.max_message_size);
        loop {
            let chunk = self
                .conn
                .read_data_chunk(self.state.data_timeout, &mut checker)
                .await?;
            if let Some(upstream) = self.upstream.as_mut()
                && let Some(error) = upstream.write_data(self.conn.chunk_bytes(&chunk)).await
            {
                // The rest of the message is read and dropped, so that
                // the client hears the answer at its end.
                tracing::warn!("upstream: {error} while the message was streamed");
                self.state.metrics.upstream_errors.inc();
                if matches!(error, UpstreamError::WriteTimeout) {
                    self.state.metrics.write_timeout("upstream");
                }
            }
            if chunk.done {
                break;
            }
        }
        if let Some(problem) = checker.problem() {
            return Ok(DataOutcome::Refused(problem));
        }
        if self.upstream.as_ref().is_none_or(Upstream::data_failed) {
            return Ok(DataOutcome::UpstreamFailed);
        }
        let size = checker.size();
        self.transcript.data_size(size);
        let (headers, headers_truncated) = checker.into_headers();
        Ok(DataOutcome::Complete(MessageSummary {
            size,
            headers,
            headers_truncated,
        }))
    }

    /// Perform an upstream step and hand its outcome to the session. An
    /// upstream that said 421 (it is closing: its own error limit, say) or
    /// did not take a write in time ends the client's session too: a fresh
    /// connection for the same client would start the upstream's count of
    /// that client's errors, or its wait, over again.
    async fn upstream_step(&mut self, step: &UpstreamStep) -> Action {
        let error = match self.try_upstream_step(step).await {
            Ok(reply) => return self.session.upstream_answered(Ok(reply)),
            Err(error) => error,
        };
        tracing::warn!("upstream: {error}");
        self.state.metrics.upstream_errors.inc();
        self.upstream = None;
        match error {
            UpstreamError::Closed(Some(reply)) => self.session.close_with(reply),
            UpstreamError::WriteTimeout => {
                self.state.metrics.write_timeout("upstream");
                self.session.close_with(catalogue::timeout(&self.hostname))
            }
            UpstreamError::Protocol(_) => self
                .session
                .upstream_answered(Err(UpstreamProblem::Protocol)),
            _ => self
                .session
                .upstream_answered(Err(UpstreamProblem::Unavailable)),
        }
    }

    async fn try_upstream_step(&mut self, step: &UpstreamStep) -> Result<Reply, UpstreamError> {
        if self.upstream.is_none() {
            if !matches!(step, UpstreamStep::Mail { .. }) {
                // Only MAIL may open a connection: anything later belongs to
                // a transaction the upstream no longer has.
                return Err(UpstreamError::Closed(None));
            }
            let context = self.session.context();
            let identity = ClientIdentity {
                addr: Some(context.client.ip()),
                port: Some(context.client.port()),
                name: context.client_name.clone(),
                helo: context.helo.clone(),
                esmtp: context.esmtp,
                login: context.auth_user.clone(),
            };
            self.upstream = Some(self.state.upstream.connect(&identity).await?);
        }
        let upstream = self.upstream.as_mut().expect("opened above");
        match step {
            UpstreamStep::Mail { path, params } => upstream.mail(path, params).await,
            UpstreamStep::Rcpt { path } => upstream.rcpt(path).await,
            UpstreamStep::Data => upstream.data().await,
            UpstreamStep::EndData => upstream.end_data().await,
        }
    }
}

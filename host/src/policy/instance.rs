//! One policy instance per SMTP session: calls a hook under the CPU and
//! memory budget, turns traps, timeouts, memory blow-ups and invalid replies
//! into one [`PolicyFailure`], and starts a fresh instance after a failure
//! (a trapped instance cannot be entered again).

use super::bindings::Policy;
use super::bindings::exports::relaygate::policy::hooks::Guest;
use super::bindings::relaygate::policy::types as wit;
use super::host_state::HostState;
use super::load_error::LoadError;
use super::verdict;
use super::{LoadedPolicy, PolicyInfo, SessionRecord};
use crate::config::FailureMode;
use crate::hook::{Decision, ListenerIdentity, Offer, PolicyContext, PolicyRequest};
use crate::smtp::reply::catalogue;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Why a hook call produced no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyFailure {
    /// Ran past `[policy] call_timeout` of guest time.
    #[error("timed out")]
    Timeout,
    /// Tried to grow memory past `[policy] memory_limit`.
    #[error("exceeded its memory limit")]
    Memory,
    /// Trapped (panic, unreachable, stack overflow...).
    #[error("trapped: {0}")]
    Trap(String),
    /// Returned a reply that fails the host's checks.
    #[error("invalid reply: {0}")]
    InvalidReply(String),
    /// Could not be instantiated.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl PolicyFailure {
    /// Short kind for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyFailure::Timeout => "timeout",
            PolicyFailure::Memory => "memory",
            PolicyFailure::Trap(_) => "trap",
            PolicyFailure::InvalidReply(_) => "invalid-reply",
            PolicyFailure::Instantiate(_) => "instantiate",
        }
    }
}

/// What a hook call gave the session.
#[derive(Debug, Clone)]
pub struct PolicyAnswer {
    /// The decision to act on (after the failure mode was applied).
    pub decision: Decision,
    /// Extensions to offer (meaningful for [`PolicyRequest::Extensions`]).
    pub offer: Offer,
    /// The failure, when the call failed and `decision` comes from
    /// `[policy] on_failure`.
    pub failure: Option<PolicyFailure>,
    /// Time the call took.
    pub elapsed: Duration,
}

/// The guest's budget ran out (raised from the epoch callback).
#[derive(Debug)]
struct BudgetExceeded;

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("policy call exceeded its time budget")
    }
}

impl std::error::Error for BudgetExceeded {}

struct Live {
    store: Store<HostState>,
    bindings: Policy,
}

enum Outcome {
    Verdict(wit::Verdict),
    Extensions(wit::EsmtpExtensions),
    Init(Result<wit::PolicyInfo, Vec<String>>),
}

/// A session's view of a loaded policy.
pub struct PolicyInstance {
    policy: Arc<LoadedPolicy>,
    session_id: u64,
    live: Option<Live>,
    /// The session record of the last call, overwritten by the next.
    record: Option<SessionRecord>,
}

impl PolicyInstance {
    /// An instance of `policy` for session `session_id`; instantiated on
    /// first use.
    pub fn new(policy: Arc<LoadedPolicy>, session_id: u64) -> Self {
        Self {
            policy,
            session_id,
            live: None,
            record: None,
        }
    }

    /// The policy this session is pinned to.
    pub fn policy(&self) -> &Arc<LoadedPolicy> {
        &self.policy
    }

    /// Instantiate now (to measure or to fail early).
    pub async fn prepare(&mut self) -> Result<(), PolicyFailure> {
        self.live().await.map(|_| ())
    }

    /// Ask the policy; failures are logged and answered per `on_failure`.
    pub async fn ask(&mut self, context: &PolicyContext, request: &PolicyRequest) -> PolicyAnswer {
        let started = Instant::now();
        let hook = request.hook();
        let mut record = self.record.take();
        context.write_wit(&mut record);
        let session = record.as_ref().map(|r| (&r.wit, &context.listener));
        let result = self.call(session, request).await;
        self.record = record;
        let result = result.and_then(|outcome| match outcome {
            Outcome::Verdict(v) => verdict::validate(v)
                .map(|d| (d, Offer::default()))
                .map_err(PolicyFailure::InvalidReply),
            Outcome::Extensions(flags) => Ok((Decision::Accept, Offer::from_wit(flags))),
            Outcome::Init(_) => Ok((Decision::Accept, Offer::default())),
        });
        let elapsed = started.elapsed();
        match result {
            Ok((decision, offer)) => PolicyAnswer {
                decision,
                offer,
                failure: None,
                elapsed,
            },
            Err(failure) => {
                tracing::warn!(
                    policy = &*self.policy.name,
                    session = self.session_id,
                    hook = hook.name(),
                    kind = failure.kind(),
                    "policy call failed: {failure}"
                );
                let decision = match self.policy.settings.on_failure {
                    FailureMode::Tempfail => Decision::Tempfail(catalogue::policy_failure()),
                    FailureMode::Accept => Decision::Accept,
                };
                PolicyAnswer {
                    decision,
                    offer: Offer::fail_safe(),
                    failure: Some(failure),
                    elapsed,
                }
            }
        }
    }

    /// Run `init` on a fresh instance of a just-compiled policy.
    pub(super) async fn run_init(policy: Arc<LoadedPolicy>) -> Result<PolicyInfo, LoadError> {
        let mut instance = PolicyInstance::new(policy, 0);
        match instance.call(None, &PolicyRequest::Init).await {
            Ok(Outcome::Init(Ok(info))) => Ok(PolicyInfo::from_wit(info)),
            Ok(Outcome::Init(Err(problems))) => Err(LoadError::Config(problems)),
            Ok(_) => unreachable!("init returns an init outcome"),
            Err(failure) => Err(LoadError::InitFailed(failure.to_string())),
        }
    }

    async fn live(&mut self) -> Result<&mut Live, PolicyFailure> {
        if self.live.is_none() {
            let policy = &self.policy;
            let mut state = HostState::new(
                policy.services.clone(),
                policy.name.clone(),
                self.session_id,
                policy.settings.memory_limit,
                policy.settings.call_timeout,
            );
            // Keys are namespaced by the chain module's name, or for
            // `[policy] module` by the name the policy gave in `init`;
            // `init` itself runs before that and gets no state.
            let namespace = policy
                .settings
                .state_namespace
                .as_deref()
                .unwrap_or(&policy.info.name);
            if !namespace.is_empty() {
                state.state_keys = Some(policy.state.namespace(namespace));
            }
            let mut store = Store::new(policy.pre.engine(), state);
            store.limiter(|state| state);
            store.epoch_deadline_callback(|context| {
                let state = context.data();
                if state.guest_time() >= state.budget {
                    return Err(wasmtime::Error::new(BudgetExceeded));
                }
                // Let other sessions run between ticks of a long call; the
                // time spent waiting for the executor is not the guest's.
                let waited = state.waited.clone();
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(async move {
                        let started = Instant::now();
                        tokio::task::yield_now().await;
                        waited.add(started.elapsed());
                    }),
                ))
            });
            store.set_epoch_deadline(1);
            let bindings = policy
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| PolicyFailure::Instantiate(format!("{e:#}")))?;
            self.live = Some(Live { store, bindings });
        }
        Ok(self.live.as_mut().expect("instantiated above"))
    }

    /// Call the hook `request` names, for `session` (the record and its
    /// listener; none for `init`).
    async fn call(
        &mut self,
        session: Option<(&wit::Session, &ListenerIdentity)>,
        request: &PolicyRequest,
    ) -> Result<Outcome, PolicyFailure> {
        let live = self.live().await?;
        live.store
            .data_mut()
            .begin_call(session.map(|(_, listener)| listener));
        let session = session.map(|(record, _)| record);
        live.store.set_epoch_deadline(1);
        // Boxed as `Send` here, where the lifetimes are concrete: the
        // compiler cannot prove it through the generated bindings otherwise.
        let call: std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<Outcome>> + Send + '_>> =
            Box::pin(invoke(live, session, request));
        let result = call.await;
        match result {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                let failure = classify(&error, live.store.data());
                self.live = None;
                Err(failure)
            }
        }
    }
}

async fn invoke(
    live: &mut Live,
    session: Option<&wit::Session>,
    request: &PolicyRequest,
) -> wasmtime::Result<Outcome> {
    let hooks: &Guest = live.bindings.relaygate_policy_hooks();
    let store = &mut live.store;
    let session = match (request, session) {
        (PolicyRequest::Init, _) => return Ok(Outcome::Init(hooks.call_init(store).await?)),
        (_, Some(session)) => session,
        (_, None) => unreachable!("hooks other than init get a session"),
    };
    Ok(match request {
        PolicyRequest::Init => unreachable!("handled above"),
        PolicyRequest::Connect => Outcome::Verdict(hooks.call_connect(store, session).await?),
        PolicyRequest::Helo { name, extended } => {
            Outcome::Verdict(hooks.call_helo(store, session, name, *extended).await?)
        }
        PolicyRequest::Extensions => {
            Outcome::Extensions(hooks.call_extensions(store, session).await?)
        }
        PolicyRequest::Auth {
            mechanism,
            identity,
        } => Outcome::Verdict(hooks.call_auth(store, session, mechanism, identity).await?),
        PolicyRequest::MailFrom { sender, params } => {
            let params = params_to_wit(params);
            Outcome::Verdict(
                hooks
                    .call_mail_from(store, session, sender, &params)
                    .await?,
            )
        }
        PolicyRequest::RcptTo { recipient, params } => {
            let params = params_to_wit(params);
            Outcome::Verdict(
                hooks
                    .call_rcpt_to(store, session, recipient, &params)
                    .await?,
            )
        }
        PolicyRequest::Data(message) => {
            let message = wit::Message {
                size: message.size,
                headers: message
                    .headers
                    .iter()
                    .map(|(name, value)| wit::Header {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                headers_truncated: message.headers_truncated,
            };
            Outcome::Verdict(hooks.call_data(store, session, &message).await?)
        }
    })
}

fn params_to_wit(params: &[crate::smtp::Param]) -> Vec<wit::Parameter> {
    params
        .iter()
        .map(|p| wit::Parameter {
            name: p.name.clone(),
            value: p.value.clone(),
        })
        .collect()
}

fn classify(error: &wasmtime::Error, state: &HostState) -> PolicyFailure {
    if error.downcast_ref::<BudgetExceeded>().is_some() {
        return PolicyFailure::Timeout;
    }
    if state.memory_exhausted {
        return PolicyFailure::Memory;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PolicyFailure::Timeout,
        Some(trap) => PolicyFailure::Trap(trap.to_string()),
        None => PolicyFailure::Trap(format!("{error:#}")),
    }
}

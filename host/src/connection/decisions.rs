//! What happens to one chain module's answer before the chain combines it:
//! it is counted (labelled with the module), traced when tracing is on for
//! this client, a refusal is kept for the status page's list, and, for a
//! dry-run module, a refusal is logged. The chain's
//! combination (`policy::ChainVerdict`) keeps a dry-run refusal from ever
//! answering.

use crate::config::PolicyMode;
use crate::hook::{Decision, PolicyContext, PolicyRequest};
use crate::metrics::Metrics;
use crate::policy::{LoadedPolicy, PolicyAnswer};
use crate::recent::{Decided, Refusal};

/// Whether calls for this client are traced.
fn tracing_on(policy: &LoadedPolicy, context: &PolicyContext) -> bool {
    let settings = policy.settings();
    let ip = crate::net::canonical(context.client.ip());
    settings.trace || settings.trace_clients.iter().any(|net| net.contains(&ip))
}

/// Count, trace and apply the mode to one answer of the chain module
/// `module`; returns the decision the session would act on were this module
/// alone (a dry-run refusal turned into an accept).
pub fn apply(
    metrics: &Metrics,
    module: &str,
    policy: &LoadedPolicy,
    context: &PolicyContext,
    request: &PolicyRequest,
    answer: &PolicyAnswer,
) -> Decision {
    let hook = request.hook();
    let failure = answer.failure.as_ref().map(|f| f.kind());
    metrics.policy_call(
        module,
        hook.name(),
        answer.decision.label(),
        answer.elapsed,
        failure,
    );
    let dry_run = policy.settings().mode == PolicyMode::DryRun;
    let decided = Decided {
        module,
        digest: policy.digest(),
        dry_run,
        decision: &answer.decision,
        failure: answer.failure.as_ref().map(ToString::to_string),
        elapsed: answer.elapsed,
    };
    if let Some(refusal) = Refusal::of(context, request, decided) {
        metrics.recent.refusal(refusal);
    }
    let reply = match &answer.decision {
        Decision::Accept => None,
        Decision::Reject(reply) | Decision::Tempfail(reply) => Some(reply.to_string()),
    };
    if tracing_on(policy, context) {
        tracing::info!(
            target: "relaygate::trace",
            hook = hook.name(),
            module,
            request = ?request,
            client = %context.client,
            client_name = ?context.client_name,
            helo = ?context.helo,
            auth_user = ?context.auth_user,
            sender = ?context.sender,
            recipients = ?context.recipients,
            verdict = answer.decision.label(),
            reply = ?reply,
            failure = ?answer.failure.as_ref().map(ToString::to_string),
            on_failure = ?policy.settings().on_failure,
            mode = ?policy.settings().mode,
            digest = policy.digest(),
            elapsed_us = u64::try_from(answer.elapsed.as_micros()).unwrap_or(u64::MAX),
            "policy decision"
        );
    }
    match (&answer.decision, dry_run) {
        (Decision::Accept, _) | (_, false) => answer.decision.clone(),
        (refusal, true) => {
            tracing::warn!(
                hook = hook.name(),
                module,
                would = refusal.label(),
                reply = ?reply,
                "dry-run: the policy would have refused this; letting it through"
            );
            Decision::Accept
        }
    }
}

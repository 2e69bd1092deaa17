//! Settings that are each valid but together cannot work, or quietly open
//! the relay: [`Config::unworkable`] lists what `relaygate check` refuses
//! (and a serving proxy logs as an error), [`Config::warnings`] what is said
//! loudly at start and by `relaygate check`.
//!
//! A module's config table belongs to the policy, so its keys are read here
//! only for modules of the embedded default policy (`builtin:apple-relay`),
//! whose keys the host knows, and only in the chains some listener asks; a
//! custom module's table is never judged by those names.

use super::{
    ChainConfig, Config, FailureMode, ListenerAuth, ModuleSource, PolicyMode, PolicyValue,
};

/// `open_relay_addr_flag` of the embedded policy.
const RESTRICTED_RELAY_KEY: &str = "open_relay_addr_flag";
/// `smtp_plain_login_flag` of the embedded policy.
const AUTH_KEY: &str = "smtp_plain_login_flag";

/// A 0/1 flag of the embedded default policy in `chain`, read from its
/// first enforcing `builtin:apple-relay` module: none when the chain runs
/// none, or the value is not a flag (the policy itself refuses that).
fn builtin_flag(chain: &ChainConfig, key: &str) -> Option<bool> {
    let module = chain.modules.iter().find(|module| {
        module.module == ModuleSource::BuiltinAppleRelay && module.mode == PolicyMode::Enforce
    })?;
    match module.config.get(key) {
        None | Some(PolicyValue::Integer(0) | PolicyValue::Boolean(false)) => Some(false),
        Some(PolicyValue::Integer(1) | PolicyValue::Boolean(true)) => Some(true),
        Some(_) => None,
    }
}

/// Where a chain's embedded-policy keys are written, for messages:
/// `policy.config` for `[policy] module`, the chain and module otherwise.
fn table_of(chain: &ChainConfig) -> String {
    let module = chain
        .modules
        .iter()
        .find(|module| module.module == ModuleSource::BuiltinAppleRelay);
    match module {
        Some(module) if module.state_namespace.is_some() => {
            format!("chain {:?} module {:?}: config", chain.name, module.name)
        }
        _ => "policy.config".to_string(),
    }
}

/// Who cannot send when the embedded policy in `chain` requires AUTH that is
/// never offered.
fn locked_out(chain: &ChainConfig) -> &'static str {
    if builtin_flag(chain, RESTRICTED_RELAY_KEY) == Some(true) {
        "every client outside open_relay_addr_list"
    } else {
        "every client"
    }
}

impl Config {
    /// The chains some listener asks.
    fn serving_chains(&self) -> Vec<ChainConfig> {
        let in_use = self.chains_in_use();
        self.chains()
            .into_iter()
            .filter(|chain| in_use.contains(&chain.name))
            .collect()
    }

    /// Combinations that lock clients out, one line each naming the keys and
    /// the fix. `relaygate check` refuses them (exit 78); a proxy started or
    /// reloaded with one logs each as an error and serves the clients it
    /// still can (listed ones), rather than none.
    pub fn unworkable(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for chain in self.serving_chains() {
            if builtin_flag(&chain, AUTH_KEY) != Some(true) {
                continue;
            }
            let table = table_of(&chain);
            match &self.auth {
                None => problems.push(format!(
                    "{table}.{AUTH_KEY} = 1 requires SMTP AUTH, but there is no [auth] section, so AUTH is never offered and {} can never send mail; add an [auth] section naming a credential backend, or set {AUTH_KEY} = 0",
                    locked_out(&chain)
                )),
                Some(auth) if auth.require_tls && self.tls.is_none() => problems.push(format!(
                    "{table}.{AUTH_KEY} = 1 requires SMTP AUTH and auth.require_tls = true (the default) offers it only after STARTTLS, but there is no [tls] certificate, so AUTH is never offered and {} can never send mail; add a [tls] section (cert, key), or set auth.require_tls = false",
                    locked_out(&chain)
                )),
                Some(_) => {}
            }
        }
        problems
    }

    /// Settings that work but probably not as intended, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let serving = self.serving_chains();
        let flags: Vec<Option<bool>> = serving
            .iter()
            .map(|chain| builtin_flag(chain, AUTH_KEY))
            .collect();
        if let Some(auth) = &self.auth {
            for listener in &self.listener_tables {
                let chain = serving.iter().find(|chain| chain.name == listener.chain);
                let Some(chain) = chain.filter(|_| listener.auth == ListenerAuth::Required) else {
                    continue;
                };
                if builtin_flag(chain, AUTH_KEY) == Some(false) {
                    notes.push(format!(
                        "listener {} requires AUTH but {}.{AUTH_KEY} is 0: the default policy then treats an authenticated client like any other, so it may send only to local_domains (or from open_relay_addr_list); set {AUTH_KEY} = 1 to let authenticated clients relay",
                        listener.name,
                        table_of(chain)
                    ));
                }
            }
            let required_somewhere = self
                .listener_tables
                .iter()
                .any(|listener| listener.auth == ListenerAuth::Required);
            if flags.iter().all(|flag| *flag == Some(false)) && !required_somewhere {
                notes.push(format!(
                    "[auth] is configured but {}.{AUTH_KEY} is 0: the default policy never offers AUTH, so no client can authenticate and [auth] is never used; set {AUTH_KEY} = 1 to require it, or remove [auth]",
                    serving.first().map_or_else(|| "policy.config".to_string(), table_of)
                ));
            } else if auth.require_tls
                && self.tls.is_none()
                && !flags.contains(&Some(true))
                && !required_somewhere
            {
                notes.push(
                    "[auth] require_tls = true but there is no [tls] certificate: STARTTLS is never possible, so AUTH is never offered".to_string(),
                );
            }
        }
        if self.policy.mode == PolicyMode::DryRun {
            notes.push(
                "policy.mode = \"dry-run\": refusals are only logged and every command goes through, so while it lasts ANY client may relay mail to ANY domain (an open relay); set mode = \"enforce\" once the logs look right".to_string(),
            );
        }
        if self.policy.on_failure == FailureMode::Accept {
            notes.push(
                "policy.on_failure = \"accept\": a policy call that fails (trap, timeout, bad reply) counts as accepted, so a policy that keeps failing lets ANY client relay mail to ANY domain; \"tempfail\" (the default) answers 451 instead".to_string(),
            );
        }
        for net in self.proxy.per_client_exempt.iter().flatten() {
            if net.prefix_len() == 0 {
                notes.push(format!(
                    "proxy.per_client_exempt holds {net}: every client is exempt, so max_connections_per_client caps no one"
                ));
            }
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap_or_else(|e| panic!("{text}\n{e}"))
    }

    const AUTH: &str = "[auth]\nbackend = \"imap\"\nserver = \"127.0.0.1:143\"\n";

    #[test]
    fn auth_required_but_never_offered_is_unworkable() {
        let p = config("[policy.config]\nsmtp_plain_login_flag = 1\n").unworkable();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("policy.config.smtp_plain_login_flag = 1"),
            "{p:?}"
        );
        assert!(p[0].contains("no [auth] section"), "{p:?}");
        assert!(p[0].contains("every client can never send"), "{p:?}");
        let restricted =
            config("[policy.config]\nopen_relay_addr_flag = true\nsmtp_plain_login_flag = true\n")
                .unworkable();
        assert!(
            restricted[0].contains("outside open_relay_addr_list"),
            "{restricted:?}"
        );

        // [auth] with STARTTLS required and no certificate: the same.
        let p = config(&format!(
            "{AUTH}[policy.config]\nsmtp_plain_login_flag = 1\n"
        ))
        .unworkable();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("auth.require_tls") && p[0].contains("[tls]"),
            "{p:?}"
        );
        assert!(
            config(&format!(
                "{AUTH}require_tls = false\n[policy.config]\nsmtp_plain_login_flag = 1\n"
            ))
            .unworkable()
            .is_empty()
        );
    }

    #[test]
    fn a_custom_policys_keys_are_not_judged() {
        let module = std::env::current_exe().unwrap();
        let text = format!(
            "[policy]\nmodule = {:?}\n[policy.config]\nsmtp_plain_login_flag = 1\n",
            module.display().to_string()
        );
        let custom = config(&text);
        assert!(custom.unworkable().is_empty());
        assert!(custom.warnings().is_empty());
        // Not-a-flag values are the policy's to refuse.
        assert!(
            config("[policy.config]\nsmtp_plain_login_flag = \"yes\"\n")
                .unworkable()
                .is_empty()
        );
    }

    #[test]
    fn auth_that_is_never_offered_is_warned_about() {
        let w = config(AUTH).warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("smtp_plain_login_flag is 0"), "{w:?}");
        let w = config(&format!(
            "{AUTH}[policy.config]\nsmtp_plain_login_flag = 0\n"
        ))
        .warnings();
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn a_listener_requiring_auth_under_a_policy_that_ignores_it_is_warned_about() {
        let listener = "[[listener]]\nname = \"submission\"\naddress = \"127.0.0.1:587\"\nauth = \"required\"\nrequire_tls = false\n";
        let w = config(&format!("{AUTH}{listener}")).warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("listener submission requires AUTH"),
            "{w:?}"
        );
        let fine = config(&format!(
            "{AUTH}{listener}[policy.config]\nsmtp_plain_login_flag = 1\n"
        ));
        assert!(
            fine.warnings().iter().all(|w| !w.contains("listener")),
            "{:?}",
            fine.warnings()
        );
    }

    #[test]
    fn open_relay_in_disguise_is_warned_about() {
        let w = config("[policy]\nmode = \"dry-run\"\n").warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("policy.mode = \"dry-run\"") && w[0].contains("open relay"),
            "{w:?}"
        );
        let w = config("[policy]\non_failure = \"accept\"\n").warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("policy.on_failure = \"accept\""), "{w:?}");
        let w = config("[proxy]\nper_client_exempt = [\"0.0.0.0/0\", \"10.0.0.0/8\"]\n").warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("caps no one"), "{w:?}");
        assert!(config("").warnings().is_empty());
        assert!(config("").unworkable().is_empty());
        assert!(Config::embedded_default().warnings().is_empty());
        assert!(Config::embedded_default().unworkable().is_empty());
    }
}

//! The WIT glue every stateful policy needs, written once.
//!
//! Each policy crate generates its own bindings of the `stateful-policy`
//! world (wit-bindgen types belong to the crate that generates them), so the
//! glue cannot be ordinary functions of this crate. [`stateful_host_glue!`]
//! expands it inside the policy's `component.rs`, after a `mod bindings`
//! holding `wit_bindgen::generate!({ world: "stateful-policy", .. })`.

/// Defines, in the calling module: `struct Host` (the host's `config` and
/// `state` imports as [`crate::config::ConfigSource`] and
/// [`crate::store::Store`]), `fn accept() -> Verdict` and
/// `fn verdict(Outcome) -> Verdict`. The calling module must have a
/// `bindings` module generated for the `stateful-policy` world.
#[macro_export]
macro_rules! stateful_host_glue {
    () => {
        /// The host's imports as the kit's traits.
        struct Host;

        impl $crate::config::ConfigSource for Host {
            fn keys(&self) -> Vec<String> {
                bindings::relaygate::policy::config::keys()
            }

            fn get(&self, key: &str) -> Option<$crate::config::Value> {
                use bindings::relaygate::policy::config::Value as Host;
                use $crate::config::Value;
                bindings::relaygate::policy::config::get(key).map(|value| match value {
                    Host::Text(text) => Value::Text(text),
                    Host::Integer(n) => Value::Integer(n),
                    Host::Float(x) => Value::Float(x),
                    Host::Boolean(b) => Value::Boolean(b),
                    Host::TextList(list) => Value::TextList(list),
                })
            }
        }

        fn store_error(
            error: bindings::relaygate::policy::state::StateError,
        ) -> $crate::store::StoreError {
            use bindings::relaygate::policy::state::StateError;
            use $crate::store::StoreError;
            match error {
                StateError::Unavailable(why) => StoreError::Unavailable(why),
                StateError::Timeout => StoreError::Timeout,
                StateError::TooLarge(why) => StoreError::TooLarge(why),
                StateError::Invalid(why) => StoreError::Invalid(why),
            }
        }

        impl $crate::store::Store for Host {
            fn get(&self, key: &str) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
                bindings::relaygate::policy::state::get(key).map_err(store_error)
            }

            fn set(
                &self,
                key: &str,
                value: &[u8],
                ttl_ms: u64,
            ) -> Result<(), $crate::store::StoreError> {
                bindings::relaygate::policy::state::set(key, value, ttl_ms).map_err(store_error)
            }

            fn increment(
                &self,
                key: &str,
                delta: i64,
                ttl_ms: u64,
            ) -> Result<i64, $crate::store::StoreError> {
                bindings::relaygate::policy::state::increment(key, delta, ttl_ms)
                    .map_err(store_error)
            }

            fn delete(&self, key: &str) -> Result<bool, $crate::store::StoreError> {
                bindings::relaygate::policy::state::delete(key).map_err(store_error)
            }
        }

        fn accept() -> bindings::exports::relaygate::policy::hooks::Verdict {
            bindings::exports::relaygate::policy::hooks::Verdict {
                action: bindings::relaygate::policy::types::Action::Accept,
                reply: None,
            }
        }

        fn verdict(
            outcome: $crate::reply::Outcome,
        ) -> bindings::exports::relaygate::policy::hooks::Verdict {
            use bindings::relaygate::policy::types::{Action, Reply};
            use $crate::reply::Outcome;
            let (action, reply) = match outcome {
                Outcome::Accept => return accept(),
                Outcome::Tempfail(reply) => (Action::Tempfail, reply),
                Outcome::Reject(reply) => (Action::Reject, reply),
            };
            bindings::exports::relaygate::policy::hooks::Verdict {
                action,
                reply: Some(Reply {
                    code: reply.code,
                    enhanced_status: Some(reply.status),
                    text: reply.text,
                }),
            }
        }
    };
}

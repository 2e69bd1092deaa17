//! The component: the kit's glue for the `stateful-policy` world around
//! [`crate::RateLimit`] (bindings, host imports, hook exports).

kit::stateful_component!(crate::RateLimit, wit: "../../wit");

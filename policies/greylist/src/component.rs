//! The component: the kit's glue for the `stateful-policy` world around
//! [`crate::Greylist`] (bindings, host imports, hook exports).

kit::stateful_component!(crate::Greylist, wit: "../../wit");

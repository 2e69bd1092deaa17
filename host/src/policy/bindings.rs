//! Rust bindings of the WIT world `relaygate:policy/policy`, generated once
//! here for the whole host.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
    imports: { default: async },
    exports: { default: async },
});

/// The WIT package this host implements, as `namespace:name`.
pub const PACKAGE: &str = "relaygate:policy";
/// The WIT package version this host implements.
pub const VERSION: &str = "0.1.0";

//! Rust bindings of the WIT world `relaygate:policy/stateful-policy`, generated
//! once here for the whole host. That world is `policy` plus the `state`
//! import, so the linker can give state to components that import it while
//! components of the plain `policy` world (which import less) still fit.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "stateful-policy",
    imports: { default: async },
    exports: { default: async },
});

/// The bindings of a loaded policy (either world: the exports are the same).
pub type Policy = StatefulPolicy;
/// A pre-instantiated policy.
pub type PolicyPre<T> = StatefulPolicyPre<T>;

/// The WIT package this host implements, as `namespace:name`.
pub const PACKAGE: &str = "relaygate:policy";
/// The WIT package version this host implements.
pub const VERSION: &str = "0.1.1";

//! What each subcommand does (SPEC section 1).

mod admin_client;
mod auth_hash;
mod check;
mod policy_check;
mod run;

pub use admin_client::admin_request;
pub use auth_hash::auth_hash;
pub use check::check;
pub use policy_check::policy_check;
pub use run::run;

//! What each subcommand does (README, "Command line").

mod admin_client;
mod auth_hash;
mod check;
mod generate;
mod policy_check;
mod policy_componentize;
mod policy_new;
mod policy_test;
mod run;

pub use admin_client::admin_request;
pub use auth_hash::auth_hash;
pub use check::check;
pub use generate::generate;
pub use policy_check::policy_check;
pub use policy_componentize::policy_componentize;
pub use policy_new::{NewError, PolicyWorld, parse_policy_name, policy_languages, policy_new};
pub use policy_test::policy_test;
pub use relaygate::policy_test::{TestError, TestOutcome};
pub use run::run;

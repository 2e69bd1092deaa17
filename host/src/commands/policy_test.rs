//! `relaygate policy test FILE CASES` (or `chain:NAME CASES --config
//! FILE`): run a policy, or a chain of the config file, offline against
//! the cases of a file (format: `policies/CASES.md`) and print each check,
//! then a summary; the work is [`relaygate::policy_test`].

use relaygate::policy_test::report::Report;
use relaygate::policy_test::{Target, TestError, TestOutcome};
use std::path::Path;

/// `relaygate policy test FILE CASES`; `config` is the global `--config`.
pub async fn policy_test(
    module: &Path,
    cases_path: &Path,
    config: Option<&Path>,
) -> Result<TestOutcome, TestError> {
    let mut report = Report::default();
    let target = Target::parse(module, config);
    let result = relaygate::policy_test::run_target(target, cases_path, &mut report).await;
    for check in &report.checks {
        println!("{check}");
    }
    if result.is_ok() {
        println!("{}", report.summary());
    }
    result
}

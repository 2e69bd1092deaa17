//! `relaygate policy test FILE CASES`: run a policy offline against the
//! cases of a file (format: `policies/CASES.md`) and print each check, then
//! a summary; the work is [`relaygate::policy_test`].

use relaygate::policy_test::report::Report;
use relaygate::policy_test::{TestError, TestOutcome};
use std::path::Path;

/// `relaygate policy test FILE CASES`.
pub async fn policy_test(module: &Path, cases_path: &Path) -> Result<TestOutcome, TestError> {
    let mut report = Report::default();
    let result = relaygate::policy_test::run(module, cases_path, &mut report).await;
    for check in &report.checks {
        println!("{check}");
    }
    if result.is_ok() {
        println!("{}", report.summary());
    }
    result
}

//! The results of a `relaygate policy test` run and how they print: one
//! line per checked stage (`ok`, or `FAIL` with what was expected), then a
//! summary line (format: `policies/CASES.md`).

use super::cases::Expected;
use crate::hook::{Decision, Offer};
use crate::policy::PolicyAnswer;
use std::fmt;

/// What a hook answered, as compared and printed.
#[derive(Debug, Clone)]
pub enum Actual {
    /// A valid verdict.
    Decision(Decision),
    /// The call failed (trap, timeout, memory, invalid answer): the kind
    /// and the detail.
    Failure(String),
}

impl Actual {
    /// The verdict of one answer; a failure stays a failure whatever the
    /// failure mode turned it into.
    pub fn from_answer(answer: &PolicyAnswer) -> Self {
        match &answer.failure {
            Some(failure) => Actual::Failure(format!("{}: {failure}", failure.kind())),
            None => Actual::Decision(answer.decision.clone()),
        }
    }

    /// Whether it meets `expected` (action, then code and enhanced status
    /// when given); a failure meets nothing.
    pub fn matches(&self, expected: &Expected) -> bool {
        let Actual::Decision(decision) = self else {
            return false;
        };
        if decision.label() != expected.action {
            return false;
        }
        let reply = match decision {
            Decision::Accept => return true,
            Decision::Reject(reply) | Decision::Tempfail(reply) => reply,
        };
        let first_word = reply
            .lines()
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        expected.code.is_none_or(|code| code == reply.code())
            && expected
                .enhanced
                .as_deref()
                .is_none_or(|status| status == first_word)
    }
}

impl fmt::Display for Actual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actual::Failure(why) => write!(f, "failure {why}"),
            Actual::Decision(Decision::Accept) => f.write_str("accept"),
            Actual::Decision(d @ (Decision::Reject(reply) | Decision::Tempfail(reply))) => {
                write!(
                    f,
                    "{} {} {}",
                    d.label(),
                    reply.code(),
                    reply.lines().join(" ")
                )
            }
        }
    }
}

/// The extensions of an offer in the file's order and spelling, sorted.
pub fn offer_names(offer: &Offer) -> String {
    let names: Vec<&str> = [
        (offer.pipelining, "PIPELINING"),
        (offer.auth, "AUTH"),
        (offer.starttls, "STARTTLS"),
        (offer.smtputf8, "SMTPUTF8"),
        (offer.chunking, "CHUNKING"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    extension_list(names)
}

/// `[A, B, ...]` sorted, as expectations and offers are printed.
pub fn extension_list(mut names: Vec<&str>) -> String {
    names.sort_unstable();
    format!("[{}]", names.join(", "))
}

/// How one check came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// As expected; what it was.
    Ok(String),
    /// Something else happened.
    Failed {
        /// The expectation.
        expected: String,
        /// What happened.
        actual: String,
    },
    /// The session never got to the stage.
    NotReached {
        /// The expectation.
        expected: String,
        /// Why the stage never ran.
        why: String,
    },
}

/// One checked stage of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The case's name.
    pub case: String,
    /// `connect`, `helo`, `rcpt a@example.com`, ...
    pub stage: String,
    /// How it came out.
    pub outcome: Outcome,
}

impl Check {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Check {
            case,
            stage,
            outcome,
        } = self;
        match outcome {
            Outcome::Ok(actual) => write!(f, "ok   {case} / {stage}: {actual}"),
            Outcome::Failed { expected, actual } => {
                write!(
                    f,
                    "FAIL {case} / {stage}: expected {expected}, got {actual}"
                )
            }
            Outcome::NotReached { expected, why } => write!(
                f,
                "FAIL {case} / {stage}: expected {expected}, got not reached ({why})"
            ),
        }
    }
}

/// Every check of a run, in file order.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases run.
    pub cases: usize,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Record a verdict against its expectation.
    pub fn verdict(&mut self, case: &str, stage: &str, expected: &Expected, actual: &Actual) {
        self.judged(case, stage, actual.matches(expected), expected, actual);
    }

    /// As [`Report::verdict`], naming the chain module `by` that refused.
    pub fn verdict_by(
        &mut self,
        case: &str,
        stage: &str,
        expected: &Expected,
        actual: &Actual,
        by: Option<&str>,
    ) {
        match by {
            Some(module) => {
                let text = format!("{actual} (by {module})");
                self.judged(case, stage, actual.matches(expected), expected, &text);
            }
            None => self.verdict(case, stage, expected, actual),
        }
    }

    /// Record a textual result against its expectation.
    pub fn text(&mut self, case: &str, stage: &str, expected: &str, actual: &str) {
        self.judged(case, stage, expected == actual, &expected, &actual);
    }

    fn judged(
        &mut self,
        case: &str,
        stage: &str,
        matched: bool,
        expected: &dyn std::fmt::Display,
        actual: &dyn std::fmt::Display,
    ) {
        let outcome = if matched {
            Outcome::Ok(actual.to_string())
        } else {
            Outcome::Failed {
                expected: expected.to_string(),
                actual: actual.to_string(),
            }
        };
        self.push(case, stage, outcome);
    }

    /// Record a stage that passed with `actual`.
    pub fn ok(&mut self, case: &str, stage: &str, actual: &str) {
        self.push(case, stage, Outcome::Ok(actual.to_string()));
    }

    /// Record an expected stage the session never reached.
    pub fn not_reached(&mut self, case: &str, stage: &str, expected: &str, why: &str) {
        let outcome = Outcome::NotReached {
            expected: expected.to_string(),
            why: why.to_string(),
        };
        self.push(case, stage, outcome);
    }

    fn push(&mut self, case: &str, stage: &str, outcome: Outcome) {
        self.checks.push(Check {
            case: case.to_string(),
            stage: stage.to_string(),
            outcome,
        });
    }

    /// Checks that passed.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.passed()).count()
    }

    /// Checks that failed (not reached included).
    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }

    /// The last line: `N cases, M checks: A ok, B FAILED`.
    pub fn summary(&self) -> String {
        format!(
            "{} cases, {} checks: {} ok, {} FAILED",
            self.cases,
            self.checks.len(),
            self.passed(),
            self.failed()
        )
    }
}

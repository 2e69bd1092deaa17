//! Compares what a case's session did with what the case expects: each
//! expected stage is the policy's answer at that hook, or "not reached"
//! with the reason when the session never asked it.

use super::cases::Case;
use super::offline::{ClientStep, Exchange, OfflineRun};
use super::report::{Actual, Report, extension_list, offer_names};
use crate::hook::{Decision, Hook};
use crate::smtp::Reply;

/// Record the case's checks from its run (`steps` as the client had them).
pub fn judge(case: &Case, steps: &[ClientStep], run: &OfflineRun, report: &mut Report) {
    let mut judge = Judge {
        case,
        run,
        steps,
        report,
        fixed_why: None,
    };
    judge.all();
}

/// Record every expectation of the case as not reached, for `why`.
pub fn unreached(case: &Case, why: &str, report: &mut Report) {
    let mut judge = Judge {
        case,
        run: &OfflineRun::default(),
        steps: &super::script::steps(case),
        report,
        fixed_why: Some(why.to_string()),
    };
    judge.all();
}

struct Judge<'a> {
    case: &'a Case,
    run: &'a OfflineRun,
    steps: &'a [ClientStep],
    report: &'a mut Report,
    /// Set when nothing ran (init refused): the reason for every stage.
    fixed_why: Option<String>,
}

impl<'a> Judge<'a> {
    fn all(&mut self) {
        let case: &'a Case = self.case;
        let steps: &'a [ClientStep] = self.steps;
        let e = &case.expect;
        let run: &'a OfflineRun = self.run;
        let connection = self.fixed_why.is_none().then_some(&run.connection);
        self.verdict(
            "connect",
            e.connect.as_ref(),
            None,
            connection,
            Hook::Connect,
        );
        let mut rcpt_expectations = case.rcpt_expectations().into_iter();
        for (index, step) in steps.iter().enumerate() {
            let exchange = self.exchange(index);
            match step {
                ClientStep::Hello { extended, .. } => {
                    self.verdict("helo", e.helo.as_ref(), Some(index), exchange, Hook::Helo);
                    if *extended {
                        self.extensions(index, exchange);
                    }
                }
                ClientStep::Auth { .. } => {
                    self.verdict("auth", e.auth.as_ref(), Some(index), exchange, Hook::Auth);
                }
                ClientStep::Mail { .. } => {
                    self.verdict(
                        "mail",
                        e.mail.as_ref(),
                        Some(index),
                        exchange,
                        Hook::MailFrom,
                    );
                }
                ClientStep::Rcpt { recipient } => {
                    let expected = rcpt_expectations.next().flatten();
                    let stage = format!("rcpt {recipient}");
                    self.verdict(
                        &stage,
                        expected.as_ref(),
                        Some(index),
                        exchange,
                        Hook::RcptTo,
                    );
                }
                ClientStep::Data { .. } => {
                    self.verdict("data", e.data.as_ref(), Some(index), exchange, Hook::Data);
                }
            }
        }
    }

    fn exchange(&self, index: usize) -> Option<&'a Exchange> {
        let run: &'a OfflineRun = self.run;
        if self.fixed_why.is_some() {
            return None;
        }
        run.steps.get(index)
    }

    fn verdict(
        &mut self,
        stage: &str,
        expected: Option<&super::cases::Expected>,
        step: Option<usize>,
        exchange: Option<&Exchange>,
        hook: Hook,
    ) {
        let Some(expected) = expected else {
            return;
        };
        match exchange.and_then(|x| x.asked_at(hook)) {
            Some(asked) => {
                let actual = Actual::from_answer(&asked.answer);
                let by = asked.decided_by.as_deref();
                self.report
                    .verdict_by(&self.case.name, stage, expected, &actual, by);
            }
            None => {
                let why = self.why_not(step, exchange);
                self.report
                    .not_reached(&self.case.name, stage, &expected.to_string(), &why);
            }
        }
    }

    fn extensions(&mut self, index: usize, exchange: Option<&Exchange>) {
        let Some(expected) = &self.case.expect.extensions else {
            return;
        };
        let expected = extension_list(expected.iter().map(|x| x.name()).collect());
        match exchange.and_then(|x| x.answer(Hook::Extensions)) {
            Some(answer) => {
                let actual = match &answer.failure {
                    Some(failure) => format!("failure {}: {failure}", failure.kind()),
                    None => offer_names(&answer.offer),
                };
                self.report
                    .text(&self.case.name, "extensions", &expected, &actual);
            }
            None => {
                let why = self.why_not(Some(index), exchange);
                self.report
                    .not_reached(&self.case.name, "extensions", &expected, &why);
            }
        }
    }

    /// Why a stage of step `step` (None: the connection) was never asked.
    fn why_not(&self, step: Option<usize>, exchange: Option<&Exchange>) -> String {
        if let Some(why) = &self.fixed_why {
            return why.clone();
        }
        let client_step = step.and_then(|i| self.steps.get(i));
        if let Some(exchange) = exchange {
            if matches!(client_step, Some(ClientStep::Data { .. })) && !self.any_rcpt_accepted() {
                return "no recipient was accepted".to_string();
            }
            return explain(exchange, client_step);
        }
        // The run ended before this step: at its last exchange.
        match self.run.steps.len().checked_sub(1) {
            Some(last) => explain(&self.run.steps[last], self.steps.get(last)),
            None => explain(&self.run.connection, None),
        }
    }

    fn any_rcpt_accepted(&self) -> bool {
        self.run.steps.iter().any(|x| {
            x.answer(Hook::RcptTo)
                .is_some_and(|a| a.decision == Decision::Accept)
                && x.reply.as_ref().is_some_and(Reply::is_positive)
        })
    }
}

/// What ended an exchange: the hook that refused, or the proxy's own reply.
fn explain(exchange: &Exchange, step: Option<&ClientStep>) -> String {
    let refused = exchange.asked.iter().find(|asked| {
        asked.request.hook() != Hook::Extensions
            && !matches!(
                Actual::from_answer(&asked.answer),
                Actual::Decision(Decision::Accept)
            )
    });
    if let Some(asked) = refused {
        let stage = stage_name(asked.request.hook(), step);
        return format!("stopped at {stage}: {}", Actual::from_answer(&asked.answer));
    }
    let verb = step.map_or("the connection", ClientStep::verb);
    let reply = exchange
        .reply
        .as_ref()
        .map_or_else(|| "no reply".to_string(), reply_text);
    if exchange.closed {
        format!("the proxy closed the session at {verb}: {reply}")
    } else {
        format!("the proxy answered {verb} with {reply}")
    }
}

fn stage_name(hook: Hook, step: Option<&ClientStep>) -> String {
    match (hook, step) {
        (Hook::RcptTo, Some(ClientStep::Rcpt { recipient })) => format!("rcpt {recipient}"),
        (Hook::MailFrom, _) => "mail".to_string(),
        (hook, _) => hook.name().to_string(),
    }
}

fn reply_text(reply: &Reply) -> String {
    format!("{} {}", reply.code(), reply.lines().join(" "))
}

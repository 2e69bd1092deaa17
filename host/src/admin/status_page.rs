//! `GET /` on the admin endpoint: one plain HTML page (no scripts, no
//! external assets) with what an operator asks first: which chains and
//! module digests serve, the reload history, live sessions and rates, and
//! the last refusals with their decision traces ("why was this
//! rejected?"). Every value from outside (names, addresses, replies) is
//! HTML-escaped; no password or message content is ever on it (see
//! [`crate::recent`]).

use crate::config::PolicyMode;
use crate::recent::{Rates, Refusal, ReloadEvent, Totals};
use crate::reload::Reloader;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

/// The page, rendered now.
pub fn render(reloader: &Reloader) -> String {
    let metrics = reloader.metrics();
    let exposition = metrics.encode();
    let totals = Totals::from_exposition(&exposition);
    let recent = &metrics.recent;
    let mut page = String::with_capacity(16 * 1024);
    page.push_str(HEAD);
    let _ = write!(
        page,
        "<h1>relaygate {}</h1><p class=\"meta\">up {} &middot; page rendered {} &middot; refreshes every 10 s</p>",
        env!("CARGO_PKG_VERSION"),
        humantime::format_duration(Duration::from_secs(recent.uptime().as_secs())),
        humantime::format_rfc3339_seconds(SystemTime::now()),
    );
    sessions(
        &mut page,
        metrics.sessions_active.get(),
        totals,
        recent.rates(totals),
    );
    chains(&mut page, reloader);
    upstreams(&mut page, &exposition);
    reloads(&mut page, reloader, &recent.reloads());
    refusals(&mut page, &recent.refusals());
    page.push_str("</body></html>\n");
    page
}

const HEAD: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"10\"><title>relaygate status</title><style>\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}\
.meta{color:#666;margin-top:.2em}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}\
code{font-size:.92em}.ok{color:#176b1f}.bad{color:#a11}.dry{color:#8a5a00}\
details>summary{cursor:pointer}dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.4em 0}\
dt{color:#555}dd{margin:0}.tiles{display:flex;gap:1em;flex-wrap:wrap}\
.tile{background:#fff;border:1px solid #ddd;padding:.5em 1em;min-width:9em}\
.tile b{display:block;font-size:1.5em}</style></head><body>";

/// Escape text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn tile(page: &mut String, label: &str, value: &str) {
    let _ = write!(page, "<div class=\"tile\"><b>{value}</b>{label}</div>");
}

fn sessions(page: &mut String, active: i64, totals: Totals, rates: Option<Rates>) {
    page.push_str("<h2>Sessions</h2><div class=\"tiles\">");
    tile(page, "sessions open now", &active.to_string());
    match rates {
        Some(rates) => {
            let per_minute = |n: f64| format!("{n:.1}");
            tile(page, "connections / min", &per_minute(rates.connections));
            tile(page, "delivered / min", &per_minute(rates.delivered));
            tile(page, "refused / min", &per_minute(rates.rejected));
            tile(page, "failed / min", &per_minute(rates.failed));
            page.push_str("</div>");
            let _ = write!(
                page,
                "<p class=\"meta\">rates over the last {} s</p>",
                rates.over.as_secs()
            );
        }
        None => {
            page.push_str("</div><p class=\"meta\">rates appear 10 s after start</p>");
        }
    }
    let _ = write!(
        page,
        "<p>Since start: {} connections; transactions {} delivered, {} refused, {} failed, {} abandoned.</p>",
        totals.connections, totals.delivered, totals.rejected, totals.failed, totals.abandoned
    );
}

fn chains(page: &mut String, reloader: &Reloader) {
    page.push_str(
        "<h2>Policy chains serving new sessions</h2><table><tr><th>chain</th><th>module</th>\
         <th>mode</th><th>source</th><th>sha256</th><th>what it says of its config</th></tr>",
    );
    for chain in reloader.chains().all() {
        for (at, module) in chain.modules.iter().enumerate() {
            let policy = &module.policy;
            let mode = match policy.settings().mode {
                PolicyMode::Enforce => "enforce",
                PolicyMode::DryRun => "<span class=\"dry\">dry-run</span>",
            };
            let chain_cell = if at == 0 {
                format!(
                    "<td rowspan=\"{}\">{}</td>",
                    chain.modules.len(),
                    escape(&chain.name)
                )
            } else {
                String::new()
            };
            let _ = write!(
                page,
                "<tr>{chain_cell}<td>{}</td><td>{mode}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&module.name),
                escape(policy.name()),
                escape(policy.digest()),
                escape(&policy.info().summary),
            );
        }
    }
    page.push_str("</table>");
}

/// The value of each series of `family` labelled only `label="..."`, by
/// that label's value, in the order the exposition lists them.
fn by_label(exposition: &str, family: &str, label: &str) -> Vec<(String, f64)> {
    let prefix = format!("{family}{{{label}=\"");
    exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (value_of_label, sample) = rest.split_once("\"} ")?;
            Some((value_of_label.to_string(), sample.trim().parse().ok()?))
        })
        .collect()
}

fn upstreams(page: &mut String, exposition: &str) {
    page.push_str(
        "<h2>Upstream servers</h2><table><tr><th>server</th><th>state</th>\
         <th>connections opened</th><th>times marked down</th></tr>",
    );
    let opened = by_label(
        exposition,
        "relaygate_upstream_server_connections_total",
        "upstream",
    );
    let down = by_label(
        exposition,
        "relaygate_upstream_marked_down_total",
        "upstream",
    );
    let of = |list: &[(String, f64)], server: &str| {
        list.iter()
            .find(|(name, _)| name == server)
            .map_or(0.0, |(_, value)| *value)
    };
    for (server, up) in by_label(exposition, "relaygate_upstream_up", "upstream") {
        let state = if up >= 1.0 {
            "<span class=\"ok\">taking mail</span>"
        } else {
            "<span class=\"bad\">down: skipped, probed</span>"
        };
        let _ = write!(
            page,
            "<tr><td><code>{}</code></td><td>{state}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&server),
            of(&opened, &server),
            of(&down, &server),
        );
    }
    page.push_str("</table>");
    let kind = |kind: &str| {
        of(
            &by_label(exposition, "relaygate_upstream_connections_total", "kind"),
            kind,
        )
    };
    let idle = exposition
        .lines()
        .find_map(|line| line.strip_prefix("relaygate_upstream_pool_idle "))
        .unwrap_or("0");
    let _ = write!(
        page,
        "<p class=\"meta\">connection pool: {} idle now; sessions took {} kept connections and opened {} since start</p>",
        escape(idle.trim()),
        kind("reused"),
        kind("opened"),
    );
}

fn reloads(page: &mut String, reloader: &Reloader, history: &[ReloadEvent]) {
    let status = reloader.status();
    let _ = write!(
        page,
        "<h2>Reloads</h2><p>{} succeeded, {} failed since start.</p>",
        status.ok, status.failed
    );
    if history.is_empty() {
        page.push_str("<p class=\"meta\">no reload since start</p>");
        return;
    }
    page.push_str(
        "<table><tr><th>when (UTC)</th><th>trigger</th><th>result</th><th>modules now serving, or why the old ones kept serving</th></tr>",
    );
    for event in history {
        let result = if event.ok {
            "<span class=\"ok\">swapped in</span>"
        } else {
            "<span class=\"bad\">refused</span>"
        };
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{result}</td><td><code>{}</code></td></tr>",
            humantime::format_rfc3339_seconds(event.at),
            escape(&event.trigger),
            escape(&event.detail),
        );
    }
    page.push_str("</table>");
}

fn refusals(page: &mut String, refusals: &[Refusal]) {
    let _ = write!(
        page,
        "<h2>Last refusals</h2><p class=\"meta\">the newest {} policy refusals (dry-run modules' would-be refusals marked), each with what its module decided on</p>",
        crate::recent::KEPT
    );
    if refusals.is_empty() {
        page.push_str("<p class=\"meta\">no refusal since start</p>");
        return;
    }
    page.push_str(
        "<table><tr><th>when (UTC)</th><th>session</th><th>listener</th><th>client</th><th>asked</th><th>module</th><th>answer</th></tr>",
    );
    for refusal in refusals {
        let answer = if refusal.dry_run {
            format!(
                "<span class=\"dry\">dry-run, would {}</span>",
                refusal.verdict
            )
        } else {
            format!("<span class=\"bad\">{}</span>", refusal.verdict)
        };
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{answer}: <code>{}</code>{}</td></tr>",
            humantime::format_rfc3339_seconds(refusal.at),
            refusal.session,
            escape(&refusal.listener),
            escape(&refusal.client),
            escape(&refusal.asked),
            escape(&refusal.module),
            escape(&refusal.reply),
            trace(refusal),
        );
    }
    page.push_str("</table>");
}

/// The decision trace of one refusal, folded.
fn trace(refusal: &Refusal) -> String {
    let optional = |value: &Option<String>| match value {
        Some(value) => format!("<code>{}</code>", escape(value)),
        None => "&ndash;".to_string(),
    };
    let recipients = if refusal.recipients.is_empty() {
        "&ndash;".to_string()
    } else {
        refusal
            .recipients
            .iter()
            .map(|r| format!("<code>{}</code>", escape(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("<details><summary>decision trace</summary><dl>");
    let mut row = |term: &str, value: String| {
        let _ = write!(out, "<dt>{term}</dt><dd>{value}</dd>");
    };
    row("hook", refusal.hook.to_string());
    row("client name", optional(&refusal.client_name));
    row("helo", optional(&refusal.helo));
    row("tls", refusal.tls.to_string());
    row("authenticated as", optional(&refusal.auth_user));
    row("sender", optional(&refusal.sender));
    row("recipients before", recipients);
    row(
        "module sha256",
        format!("<code>{}</code>", escape(&refusal.digest)),
    );
    row("call time", format!("{} us", refusal.elapsed.as_micros()));
    if let Some(failure) = &refusal.failure {
        row(
            "failure",
            format!(
                "<span class=\"bad\">{}</span> (the answer is the failure answer)",
                escape(failure)
            ),
        );
    }
    out.push_str("</dl></details>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}

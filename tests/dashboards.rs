//! The shipped Grafana dashboard and Prometheus alert rules
//! (`dist/grafana/`, `dist/prometheus/`) ask only for metrics relaygate
//! exports, and the rules pass `promtool check rules` and their own
//! `promtool test rules` unit tests (each alert fires on the series that
//! should raise it and stays quiet otherwise).

use relaygate::metrics::Metrics;
use relaygate_tests::tools::{require_tool, run_tool};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn dist(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path)
}

/// Every series name a scrape of relaygate can show.
fn exported() -> BTreeSet<String> {
    Metrics::default().series_names().into_iter().collect()
}

/// The `relaygate_*` names a text mentions.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("relaygate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The PromQL expressions of every panel target of the dashboard.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(dist("grafana/relaygate.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    queries
}

#[test]
fn the_dashboard_queries_only_metrics_relaygate_exports() {
    let exported = exported();
    assert!(
        exported.contains("relaygate_policy_calls_total"),
        "{exported:?}"
    );
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut used = BTreeSet::new();
    for query in &queries {
        let names = mentioned(query);
        assert!(
            !names.is_empty(),
            "a panel asks for no relaygate metric: {query}"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} (in {query}) is not exported: {exported:?}"
            );
            used.insert(name);
        }
    }
    // Every metric is on the dashboard (histogram series count once).
    for name in &exported {
        let family_shown = used.iter().any(|u| {
            let base = |n: &str| {
                ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .fold(n.to_string(), |n, s| n.trim_end_matches(s).to_string())
            };
            base(u) == base(name)
        });
        assert!(family_shown, "{name} is exported but on no panel");
    }
}

#[test]
fn the_alert_rules_ask_only_for_exported_metrics() {
    let exported = exported();
    let rules = std::fs::read_to_string(dist("prometheus/relaygate-alerts.yml")).unwrap();
    let names = mentioned(&rules);
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        assert!(
            exported.contains(&name),
            "{name} is not exported: {exported:?}"
        );
    }
}

#[tokio::test]
async fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let dir = dist("prometheus");
    let rules = dir.join("relaygate-alerts.yml");
    let tests = dir.join("relaygate-alerts.test.yml");
    for args in [
        ["check", "rules", rules.to_str().unwrap()],
        ["test", "rules", tests.to_str().unwrap()],
    ] {
        let output = run_tool(&promtool, &args, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

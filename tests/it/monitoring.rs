//! The monitoring files: the alert rules pass their unit tests (`promtool test rules`), and
//! the rules, the Prometheus example and the Alertmanager example pass their tools' checks.
//! promtool and amtool come from Debian's packages (scripts/monitoring-tools).

use std::path::Path;
use std::process::Command;

use crate::service::monitoring_tool;

fn run(tool: &str, args: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring");
    let out = Command::new(monitoring_tool(tool))
        .args(args)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    run("promtool", &["test", "rules", "prometheus/alerts.test.yml"]);
}

#[test]
fn the_rules_and_the_prometheus_example_are_valid() {
    run("promtool", &["check", "rules", "prometheus/alerts.yml"]);
    run(
        "promtool",
        &["check", "config", "prometheus/prometheus.yml"],
    );
}

#[test]
fn the_alertmanager_example_is_valid() {
    run("amtool", &["check-config", "alertmanager/alertmanager.yml"]);
}

/// The committed Grafana dashboard, parsed.
fn dashboard() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/grafana/pgperf-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_dashboard_is_json_with_a_query_in_every_panel() {
    let dashboard = dashboard();
    let panels = dashboard["panels"].as_array().unwrap();
    let charts: Vec<_> = panels.iter().filter(|p| p["type"] != "row").collect();
    assert!(charts.len() >= 15, "{} panels", charts.len());
    for p in charts {
        let targets = p["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty()
                && targets
                    .iter()
                    .all(|t| t["expr"].as_str().is_some_and(|e| e.contains("pgperf_"))),
            "panel {} has no pgperf query",
            p["title"]
        );
    }
}

/// Every alert keeps `instance` (an aggregation must keep it: `sum by (instance, ...)`), and
/// every alert links a runbook that exists in docs/runbooks/.
#[test]
fn every_alert_keeps_its_instance_and_links_a_runbook_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = std::fs::read_to_string(root.join("monitoring/prometheus/alerts.yml")).unwrap();
    let alerts: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert!(alerts.len() >= 19, "{} alerts", alerts.len());
    for alert in alerts {
        let name = alert.lines().next().unwrap();
        let expr = alert
            .lines()
            .find_map(|l| l.trim().strip_prefix("expr: "))
            .unwrap();
        for aggregation in ["sum(", "avg(", "max(", "min(", "count("] {
            assert!(
                !expr.contains(aggregation),
                "{name}: {aggregation} drops instance: {expr}"
            );
        }
        for by in expr.split(" by (").skip(1) {
            assert!(
                by.starts_with("instance"),
                "{name}: by ({by} drops instance"
            );
        }
        let runbook = alert
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url: "))
            .unwrap_or_else(|| panic!("{name} has no runbook_url"))
            .trim_matches('"');
        assert!(
            runbook.starts_with("docs/runbooks/") && root.join(runbook).is_file(),
            "{name}: runbook {runbook} does not exist"
        );
    }
}

/// The color Grafana gives `value` by a panel's absolute thresholds: the last step at or
/// below it (the first step, `null`, stands for minus infinity).
fn threshold_color(panel: &serde_json::Value, value: f64) -> String {
    let steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .unwrap();
    steps
        .iter()
        .rfind(|s| s["value"].as_f64().is_none_or(|at| at <= value))
        .and_then(|s| s["color"].as_str())
        .unwrap()
        .to_owned()
}

#[test]
fn the_database_up_panel_is_red_at_0_and_green_at_1() {
    let dashboard = dashboard();
    let panel = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Database up")
        .unwrap();
    assert_eq!(threshold_color(panel, 0.0), "red");
    assert_eq!(threshold_color(panel, 1.0), "green");
}

//! The history of load runs: one JSON line per run (commit, profile, key figures), and
//! `pgperf history`, which prints the trend as a table and plots it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use pgperf::perf::plot::{Chart, Series, line_chart};

use super::profile::Kind;
use super::report::Summary;

/// One run, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it ended (UTC, RFC 3339).
    pub finished_at: String,
    /// The commit, if known.
    pub commit: Option<String>,
    /// The profile.
    pub profile: String,
    /// Responses.
    pub requests: u64,
    /// Responses per second.
    pub achieved_per_s: f64,
    /// Searches per second.
    pub achieved_searches_per_s: f64,
    /// Failed over all.
    pub error_rate: f64,
    /// Cached search p50, ms.
    pub cached_p50_ms: f64,
    /// Uncached search p95, ms.
    pub uncached_p95_ms: f64,
    /// The worst database p95 the service reported, ms.
    pub db_query_p95_ms: f64,
    /// Stress: the breaking point.
    pub breaking_point_per_s: Option<f64>,
    /// Whether every threshold held.
    pub passed: bool,
}

impl Entry {
    /// The entry of a run.
    pub fn of(s: &Summary) -> Self {
        let k = |kind: Kind| s.kinds.get(&kind).copied();
        Self {
            finished_at: s.finished_at.clone(),
            commit: s.commit.clone(),
            profile: s.profile.name.to_string(),
            requests: s.requests,
            achieved_per_s: s.achieved_per_s,
            achieved_searches_per_s: s.achieved_searches_per_s,
            error_rate: s.error_rate,
            cached_p50_ms: k(Kind::CachedSearch).map_or(0.0, |c| c.p50_ms),
            uncached_p95_ms: k(Kind::UncachedSearch).map_or(0.0, |c| c.p95_ms),
            db_query_p95_ms: s.db_query_p95_ms,
            breaking_point_per_s: s.breaking_point_per_s,
            passed: s.breaches.is_empty(),
        }
    }
}

/// Appends the run to the history file (created with its directory if need be).
pub fn append(path: &Path, s: &Summary) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the history file {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(&Entry::of(s))?)
        .with_context(|| format!("appending to {}", path.display()))
}

/// Reads the history; a malformed line is an error naming its number.
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the history file {} (run pgperf load first)",
            path.display()
        )
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not a history entry", path.display(), i + 1))
        })
        .collect()
}

/// How much worse than the previous run of its profile a p95 may be before a warning.
pub const WORSE_THAN_PREVIOUS: f64 = 1.25;

/// Warnings for `now` against the last run of its profile in `history`: each p95 more than
/// [`WORSE_THAN_PREVIOUS`] x the previous one's, with both figures. Only a warning: a run on
/// another machine or a busier moment moves them too; the thresholds are what fail.
pub fn against_previous(history: &[Entry], now: &Entry) -> Vec<String> {
    let Some(before) = history.iter().rev().find(|e| e.profile == now.profile) else {
        return Vec::new();
    };
    let figures = [
        (
            "uncached search p95",
            before.uncached_p95_ms,
            now.uncached_p95_ms,
        ),
        (
            "database query p95",
            before.db_query_p95_ms,
            now.db_query_p95_ms,
        ),
    ];
    figures
        .into_iter()
        .filter(|(_, then, now)| *then > 0.0 && *now > WORSE_THAN_PREVIOUS * then)
        .map(|(what, then, now)| {
            format!(
                "{what} {now:.1} ms is {:.2}x the previous {} run's {then:.1} ms ({}, commit {})",
                now / then,
                before.profile,
                before.finished_at,
                before.commit.as_deref().unwrap_or("unknown")
            )
        })
        .collect()
}

/// Options of `pgperf history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The history file.
    #[arg(long, default_value = "target/pgperf/load/history.jsonl")]
    pub file: PathBuf,
    /// Only this profile's runs.
    #[arg(long)]
    pub profile: Option<String>,
    /// Where the plot goes.
    #[arg(long, default_value = "target/pgperf/load/history.svg")]
    pub plot: PathBuf,
}

/// The trend table.
pub fn table(entries: &[Entry]) -> String {
    let mut t = String::from(
        "| # | finished | commit | profile | req/s | searches/s | errors | cached p50 | uncached p95 | db p95 | breaking point | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (i, e) in entries.iter().enumerate() {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.2} % | {:.2} ms | {:.1} ms | {:.1} ms | {} | {} |\n",
            i + 1,
            e.finished_at,
            e.commit.as_deref().unwrap_or("-"),
            e.profile,
            e.achieved_per_s,
            e.achieved_searches_per_s,
            100.0 * e.error_rate,
            e.cached_p50_ms,
            e.uncached_p95_ms,
            e.db_query_p95_ms,
            e.breaking_point_per_s.map_or("-".to_owned(), |b| format!("{b:.0}/s")),
            if e.passed { "passed" } else { "FAILED" }
        ));
    }
    t
}

/// `pgperf history`.
pub fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let entries: Vec<Entry> = read(&args.file)?
        .into_iter()
        .filter(|e| args.profile.as_ref().is_none_or(|p| &e.profile == p))
        .collect();
    if entries.is_empty() {
        anyhow::bail!(
            "{} has no runs{}",
            args.file.display(),
            args.profile
                .as_ref()
                .map_or(String::new(), |p| format!(" of profile {p}"))
        );
    }
    print!("{}", table(&entries));
    let series = |name: &str, f: fn(&Entry) -> f64| Series {
        name: name.to_owned(),
        points: entries
            .iter()
            .enumerate()
            .map(|(i, e)| ((i + 1) as f64, f(e)))
            .collect(),
    };
    if let Some(dir) = args.plot.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    line_chart(
        &args.plot,
        &Chart {
            title: "Load runs: latency trend",
            x_desc: "run (oldest first)",
            y_desc: "ms",
            log_log: false,
        },
        &[
            series("cached search p50", |e| e.cached_p50_ms),
            series("uncached search p95", |e| e.uncached_p95_ms),
            series("database query p95", |e| e.db_query_p95_ms),
        ],
    )
    .map_err(|e| anyhow::anyhow!("drawing {}: {e}", args.plot.display()))?;
    println!("\nPlot: {}", args.plot.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(profile: &str, uncached_p95_ms: f64, db_query_p95_ms: f64) -> Entry {
        Entry {
            finished_at: "2026-12-01T20:00:00Z".into(),
            commit: Some("abc1234".into()),
            profile: profile.into(),
            requests: 100,
            achieved_per_s: 20.0,
            achieved_searches_per_s: 11.0,
            error_rate: 0.0,
            cached_p50_ms: 3.0,
            uncached_p95_ms,
            db_query_p95_ms,
            breaking_point_per_s: None,
            passed: true,
        }
    }

    #[test]
    fn a_p95_over_a_quarter_worse_than_the_last_run_of_its_profile_warns_with_both_figures() {
        let history = [entry("smoke", 40.0, 100.0), entry("load", 10.0, 10.0)];
        let warnings = against_previous(&history, &entry("smoke", 60.0, 110.0));
        assert_eq!(
            warnings,
            [
                "uncached search p95 60.0 ms is 1.50x the previous smoke run's 40.0 ms \
              (2026-12-01T20:00:00Z, commit abc1234)"
            ]
        );
        assert!(against_previous(&history, &entry("smoke", 50.0, 125.0)).is_empty());
        assert!(against_previous(&history, &entry("spike", 500.0, 500.0)).is_empty());
    }
}

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
    fn of(s: &Summary) -> Self {
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

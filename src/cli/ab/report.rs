//! The paired run's report: a terminal table, Markdown for a CI job summary, and ab.json.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use pgperf::perf::paired::Change;

use super::build::Revision;
use super::compare::CaseResult;

/// The verdict's words, with the ratio and interval when there are any.
pub fn verdict_text(r: &CaseResult) -> String {
    let ratio = r.estimate.map_or("too few rounds".to_owned(), |e| {
        format!("x{:.2} [{:.2}, {:.2}]", e.ratio, e.low, e.high)
    });
    let verdict = match (&r.counter_breach, r.estimate.map(|e| e.change)) {
        (Some(b), _) => format!(
            "FAIL counter: {} {} -> {}",
            b.counter.label(),
            round(b.recorded),
            round(b.measured)
        ),
        (None, Some(change)) => change.label().to_owned(),
        (None, None) => "not judged".to_owned(),
    };
    let accepted = if r.accepted && (r.slower() || r.counter_breach.is_some()) {
        " (accepted)"
    } else {
        ""
    };
    format!("{ratio:<24} {verdict}{accepted}")
}

fn round(x: f64) -> String {
    format!("{}", pgperf::perf::stats::round_sig(x, 3))
}

fn us(x: f64) -> String {
    if x >= 1_000.0 {
        format!("{:.2} ms", x / 1_000.0)
    } else {
        format!("{x:.0} µs")
    }
}

/// The terminal table.
pub fn table(results: &[CaseResult]) -> String {
    let mut out = format!(
        "{:<30} {:>10} {:>10} {:>6}  {:<24} {}\n",
        "case", "base p50", "head p50", "rounds", "head/base [98% CI]", "verdict"
    );
    for r in results {
        let rounds = r.estimate.map_or(0, |e| e.rounds);
        let text = verdict_text(r);
        let (ratio, verdict) = text.split_at(24.min(text.len()));
        let _ = writeln!(
            out,
            "{:<30} {:>10} {:>10} {:>6}  {ratio} {}",
            r.case,
            us(r.base_us()),
            us(r.head_us()),
            rounds,
            verdict.trim()
        );
    }
    out
}

/// The Markdown summary.
pub fn markdown(title: &str, results: &[CaseResult]) -> String {
    let mut out = format!(
        "## {title}\n\n| case | base p50 | head p50 | head/base | 98% CI | rounds | verdict |\n|---|---:|---:|---:|---|---:|---|\n"
    );
    for r in results {
        let (ratio, ci, rounds) = r.estimate.map_or(("-".into(), "-".into(), 0), |e| {
            (
                format!("x{:.2}", e.ratio),
                format!("[{:.2}, {:.2}]", e.low, e.high),
                e.rounds,
            )
        });
        let text = verdict_text(r);
        let verdict = text[24.min(text.len())..].trim();
        let verdict = if r.fails() {
            format!("**{verdict}**")
        } else {
            verdict.to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio} | {ci} | {rounds} | {verdict} |",
            r.case,
            us(r.base_us()),
            us(r.head_us())
        );
    }
    out
}

/// Writes `summary.md` and `ab.json` into `dir`.
pub fn write(dir: &Path, title: &str, results: &[CaseResult]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let md = dir.join("summary.md");
    std::fs::write(&md, markdown(title, results)).with_context(|| md.display().to_string())?;
    let json = dir.join("ab.json");
    let body = serde_json::json!({ "title": title, "cases": results });
    std::fs::write(&json, serde_json::to_string_pretty(&body)?)
        .with_context(|| json.display().to_string())?;
    println!("results: {}/{{ab.json,summary.md}}", dir.display());
    Ok(())
}

/// The text of a failed run: each failed case with its numbers, then how to accept it.
pub fn failure_text(failed: &[&CaseResult], base: &Revision) -> String {
    let mut text = format!(
        "{} case(s) failed against {} ({}):",
        failed.len(),
        base.given,
        base.short()
    );
    for r in failed {
        let _ = write!(
            text,
            "\n- {}: base {} head {}, {}",
            r.case,
            us(r.base_us()),
            us(r.head_us()),
            verdict_text(r)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        if r.estimate.is_some_and(|e| e.change == Change::Slower) {
            let _ = write!(
                text,
                " (slower with 99 % confidence by at least the threshold)"
            );
        }
    }
    text.push_str(
        "\nIf the change is intended, say so in a commit of the PR with the trailer \
         `Perf-accepted: <case>` (one per case), or pass --accept <case>; then re-record the \
         committed baselines (PGPERF_BASELINE=update scripts/bench and scripts/test) so that \
         reviewers see the move.",
    );
    text
}

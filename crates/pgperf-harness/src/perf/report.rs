//! Reports: a readable table for the terminal, a Markdown summary for a CI job summary, a JSON
//! results file, and github-action-benchmark's `customSmallerIsBetter` export.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::PerfError;
use super::baseline::{CaseBaseline, CaseName, Comparison, Observation};
use super::calibrate::References;

/// One case's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// The case.
    pub case: CaseName,
    /// What was measured.
    pub observation: Observation,
    /// The baseline it was compared with.
    pub baseline: Option<CaseBaseline>,
    /// The comparison.
    pub comparison: Option<Comparison>,
    /// Whether this run wrote the case to the baseline file.
    pub recorded: bool,
    /// Anything the reader should know (recorded, noise confirmed away, stale).
    pub note: Option<String>,
}

impl CaseReport {
    /// A report of a measurement and its comparison.
    pub fn new(
        case: &CaseName,
        observation: Observation,
        compared: Option<(CaseBaseline, Comparison)>,
    ) -> Self {
        let (baseline, comparison) = compared.map_or((None, None), |(b, c)| (Some(b), Some(c)));
        let note = comparison.and_then(|c| {
            let mut notes = Vec::new();
            match c.verdict {
                super::baseline::Verdict::Stale => notes.push(
                    "much faster than the baseline: update it with PGPERF_BASELINE=update"
                        .to_owned(),
                ),
                super::baseline::Verdict::OutOfModel => notes.push(format!(
                    "time not judged: this machine's references moved up to x{:.1} from the \
                     baseline's, beyond what the timing model holds for (x{} for round trips, \
                     x{} for CPU); counters still judged, and the paired guard (pgperf ab) judges \
                     time; for a machine kind that stays so, record a baseline with \
                     PGPERF_BASELINE=force",
                    c.stretch,
                    super::baseline::compare::MAX_STRETCH,
                    super::baseline::compare::MAX_CPU_STRETCH
                )),
                _ => {}
            }
            if baseline.is_some_and(|b| b.counters.is_some()) && !c.counters_checked {
                notes.push(
                    "counters not checked: this server has no pg_stat_statements \
                     (add it to shared_preload_libraries)"
                        .to_owned(),
                );
            }
            (!notes.is_empty()).then(|| notes.join("; "))
        });
        Self {
            case: case.clone(),
            observation,
            baseline,
            comparison,
            recorded: false,
            note,
        }
    }

    /// Marks the case as written to the baseline file.
    pub fn recorded(mut self, note: &str) -> Self {
        self.recorded = true;
        self.note = Some(note.to_owned());
        self
    }

    /// Adds a note.
    pub fn noted(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }

    fn verdict_label(&self) -> &'static str {
        match (&self.comparison, self.recorded) {
            (_, true) => "recorded",
            (Some(c), false) => c.verdict.label(),
            (None, false) => "-",
        }
    }

    fn ratio_text(&self) -> String {
        self.comparison
            .map_or("-".into(), |c| format!("x{:.2}", c.ratio))
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1_000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// The references of a run, as one line of text.
pub fn references_text(r: &References) -> String {
    format!(
        "round trip {:.0} µs, server unit {:.0} µs, client unit {:.0} µs",
        r.round_trip_us, r.server_us, r.client_us
    )
}

/// "fails at": the smallest slowdown of this run's p50 that the guard would fail (see
/// [`Comparison::fails_at`]).
const HEADERS: [&str; 10] = [
    "case", "p50", "p95", "p99", "ops/s", "trips/op", "expected", "ratio", "fails at", "verdict",
];

fn rows(reports: &[CaseReport]) -> Vec<[String; 10]> {
    reports
        .iter()
        .map(|r| {
            let s = &r.observation.summary;
            [
                r.case.to_string(),
                fmt_us(s.p50_us),
                fmt_us(s.p95_us),
                fmt_us(s.p99_us),
                format!("{:.0}", s.throughput_per_s),
                format!("{:.2}", r.observation.counted.round_trips),
                r.comparison
                    .map_or("-".into(), |c| fmt_us(c.expected_p50_us)),
                r.ratio_text(),
                r.comparison
                    .map_or("-".into(), |c| format!("{:.2}x", c.fails_at)),
                r.verdict_label().to_owned(),
            ]
        })
        .collect()
}

/// A fixed-width table. "trips/op" is the counted round trips per operation; "expected p50"
/// is what the baseline's make-up gives at this run's references; "ratio" is p50 over it.
pub fn table(reports: &[CaseReport]) -> String {
    let rows = rows(reports);
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            if i == 0 {
                write!(out, "{cell}{}  ", " ".repeat(pad))
            } else {
                write!(out, "{}{cell}  ", " ".repeat(pad))
            }
            .ok();
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    line(&mut out, &HEADERS.map(String::from));
    for row in &rows {
        line(&mut out, row);
    }
    for r in reports.iter().filter(|r| r.note.is_some()) {
        writeln!(
            out,
            "  {}: {}",
            r.case,
            r.note.as_deref().unwrap_or_default()
        )
        .ok();
    }
    out
}

/// The cases whose time this run could not judge (the machine is outside the model).
pub fn unjudged(reports: &[CaseReport]) -> Vec<&CaseReport> {
    reports
        .iter()
        .filter(|r| {
            r.comparison
                .is_some_and(|c| c.verdict == super::baseline::Verdict::OutOfModel)
        })
        .collect()
}

/// What to say of cases whose time was not judged: on this runner the committed baseline
/// judges only their counters, and the paired check (`pgperf ab`) judges their time.
fn unjudged_text(cases: &[&CaseReport]) -> Option<String> {
    (!cases.is_empty()).then(|| {
        format!(
            "time NOT judged by the committed baseline for {} case(s) on this runner ({}): its \
             references moved beyond the timing model's range. Counters were judged; the paired \
             check (`pgperf ab --base <PR base>`, the perf job) judges their time.",
            cases.len(),
            cases
                .iter()
                .map(|r| r.case.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// GitHub Actions annotations (`::error ...::`) for cases whose time was not judged: printed
/// by the callers when running in CI, so that the gap is never buried in a note.
pub fn unjudged_annotations(reports: &[CaseReport]) -> Option<String> {
    unjudged_text(&unjudged(reports)).map(|t| format!("::error title=time not judged::{t}"))
}

/// A Markdown table for `$GITHUB_STEP_SUMMARY`; cases whose time was not judged are called
/// out above it.
pub fn markdown(title: &str, reports: &[CaseReport]) -> String {
    let mut out = format!("### {title}\n\n");
    if let Some(text) = unjudged_text(&unjudged(reports)) {
        writeln!(out, "> [!CAUTION]\n> {text}\n").ok();
    }
    write!(
        out,
        "| {} |\n|{}\n",
        HEADERS.join(" | "),
        "---|".repeat(HEADERS.len())
    )
    .ok();
    for row in rows(reports) {
        writeln!(out, "| {} |", row.join(" | ")).ok();
    }
    let notes: Vec<_> = reports.iter().filter(|r| r.note.is_some()).collect();
    if !notes.is_empty() {
        out.push('\n');
        for r in notes {
            writeln!(
                out,
                "- `{}`: {}",
                r.case,
                r.note.as_deref().unwrap_or_default()
            )
            .ok();
        }
    }
    out
}

#[derive(Serialize)]
struct BenchmarkEntry<'a> {
    name: &'a str,
    unit: &'static str,
    value: f64,
    extra: String,
}

/// github-action-benchmark's `customSmallerIsBetter`: one entry per case, its p50 in µs.
pub fn benchmark_json(reports: &[CaseReport]) -> String {
    let entries: Vec<_> = reports
        .iter()
        .map(|r| BenchmarkEntry {
            name: r.case.as_str(),
            unit: "us",
            value: super::stats::round_sig(r.observation.summary.p50_us, 3),
            extra: format!(
                "p95 {:.0} us, p99 {:.0} us, {:.0} ops/s, {:.2} round trips/op; {}",
                r.observation.summary.p95_us,
                r.observation.summary.p99_us,
                r.observation.summary.throughput_per_s,
                r.observation.counted.round_trips,
                references_text(&r.observation.references).replace('µ', "u"),
            ),
        })
        .collect();
    serde_json::to_string_pretty(&entries).expect("serializable")
}

/// Writes `results.json`, `summary.md` and `benchmark.json` into `dir`.
pub fn write_all(dir: &Path, title: &str, reports: &[CaseReport]) -> Result<(), PerfError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PerfError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = [
        (
            "results.json",
            serde_json::to_string_pretty(reports).expect("serializable"),
        ),
        ("summary.md", markdown(title, reports)),
        ("benchmark.json", benchmark_json(reports)),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::baseline::{Bound, CpuPerOp, MakeUp, compare};
    use crate::perf::counters::Counted;
    use crate::perf::stats::Summary;

    fn report(case: &str, p50: f64, base: Option<f64>) -> CaseReport {
        let summary = Summary {
            count: 10,
            errors: 0,
            min_us: p50,
            p50_us: p50,
            p95_us: p50,
            p99_us: p50,
            max_us: p50,
            mean_us: p50,
            throughput_per_s: 1e6 / p50,
        };
        let references = References {
            client_us: 100.0,
            parallel_us: 10.0,
            round_trip_cpu_us: 40.0,
            round_trip_us: 40.0,
            server_us: 800.0,
        };
        let counted = Counted {
            counters: None,
            round_trips: 1.0,
            server_us: None,
        };
        let o = Observation {
            summary,
            references,
            counted,
            client_cpu_us: 1.0,
            server_cpu_us: None,
        };
        let compared = base.map(|b| {
            let cb = CaseBaseline {
                bound: Bound::default(),
                concurrency: 1,
                counters: None,
                cpu_us: CpuPerOp {
                    client_us: 1.0,
                    server_us: 0.0,
                },
                make_up_us: MakeUp::split(b, &references, 1.0, None),
                p50_us: b,
                p95_us: b,
                p99_us: b,
                references_us: references,
                throughput_per_s: 1.0,
            };
            (cb, compare(&cb, &o))
        });
        CaseReport::new(&CaseName::new(case).unwrap(), o, compared)
    }

    #[test]
    fn the_table_shows_each_case_with_ratio_and_verdict() {
        let t = table(&[
            report("crud.insert", 200.0, Some(100.0)),
            report("crud.read", 50.0, None),
        ]);
        let lines: Vec<_> = t.lines().collect();
        assert!(
            lines[0].starts_with("case") && lines[0].ends_with("verdict"),
            "{t}"
        );
        assert!(
            lines[1].contains("crud.insert")
                && lines[1].contains("x2.00")
                && lines[1].contains("FAIL slower"),
            "{t}"
        );
        assert!(
            lines[2].contains("crud.read") && lines[2].trim_end().ends_with('-'),
            "{t}"
        );
    }

    #[test]
    fn the_benchmark_export_is_custom_smaller_is_better() {
        let v: serde_json::Value =
            serde_json::from_str(&benchmark_json(&[report("a.b", 123.456, None)])).unwrap();
        assert_eq!(v[0]["name"], "a.b");
        assert_eq!(v[0]["unit"], "us");
        assert_eq!(v[0]["value"], 123.0);
    }

    #[test]
    fn markdown_has_a_header_row_and_one_row_per_case() {
        let md = markdown("pgperf", &[report("a.b", 10.0, None)]);
        assert_eq!(md.lines().filter(|l| l.starts_with('|')).count(), 3, "{md}");
    }
}

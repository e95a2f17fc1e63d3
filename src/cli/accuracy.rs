//! `pgperf accuracy`: how well resolution links names to the right entity, at match
//! thresholds from 0.30 to 0.90, and what each threshold costs in time.
//!
//! - **Generated set**: `--entities` generated entities (the COPY path), and `--names`
//!   labelled names made from them ([`labelled::evaluation_set`]: typos, reordered words,
//!   initials, legal forms, case, accents, punctuation, and decoys that must not match).
//! - **FEBRL** (`--febrl DIR`, the folder `scripts/febrl` fills): for each FEBRL data set,
//!   the original records become entities (kind person, name and address) and their
//!   duplicates are resolved; the truth is in `rec_id`.
//!
//! At each threshold t a name is linked when its best candidate scores t or more. How much
//! work resolution does depends on the review threshold (names it leaves below review take
//! the trigram pass), not on the match threshold: the names are resolved twice, with the
//! default review threshold (0.45, for match thresholds from 0.45 up) and with 0.30 (for
//! those below), in batches of 1,000; the time per name is that run's wall time over the
//! names.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sqlx::PgConnection;

use pgperf::dataset::febrl::{self, Person};
use pgperf::dataset::{self, labelled};
use pgperf::db::ingest::copy_entities;
use pgperf::db::resolve::{MAX_BATCH, NameToResolve, Thresholds, resolve_batch};
use pgperf::db::{EntityKind, NewEntity, PoolSettings};
use pgperf::perf::accuracy::Confusion;

use super::with_workspace;

const SEED: u64 = pgperf::scenarios::seed::SEED;

/// FEBRL's data sets: (name, originals and duplicates in one file, or originals then
/// duplicates).
const FEBRL_SETS: [(&str, &[&str]); 4] = [
    ("febrl1", &["dataset1.csv"]),
    ("febrl2", &["dataset2.csv"]),
    ("febrl3", &["dataset3.csv"]),
    ("febrl4", &["dataset4a.csv", "dataset4b.csv"]),
];

/// Options of `pgperf accuracy`.
#[derive(Debug, clap::Args)]
pub struct AccuracyArgs {
    /// Generated entities (1 000 to 10 000 000).
    #[arg(long, default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1_000..=10_000_000))]
    pub entities: u64,
    /// Labelled names resolved against them (100 to 1 000 000).
    #[arg(long, default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    pub names: u64,
    /// A folder with FEBRL's dataset*.csv (run `scripts/febrl`, which fetches them).
    #[arg(long)]
    pub febrl: Option<PathBuf>,
    /// Where report.json is written.
    #[arg(long, default_value = "target/pgperf-accuracy")]
    pub out: PathBuf,
}

/// A labelled name: what is resolved and the entity id it refers to.
struct Labelled {
    name: NameToResolve,
    truth: Option<i64>,
    group: &'static str,
}

/// Precision, recall and F1 at one threshold.
#[derive(Debug, Clone, Serialize)]
struct Point {
    threshold: f64,
    precision: f64,
    recall: f64,
    f1: f64,
    us_per_name: f64,
    confusion: Confusion,
}

/// One data set's sweep.
#[derive(Debug, Clone, Serialize)]
struct Sweep {
    data: String,
    entities: u64,
    names: usize,
    points: Vec<Point>,
    /// Recall per kind of name at the default match threshold.
    recall_by_group: Vec<(String, f64, usize)>,
}

/// Thresholds 0.30, 0.35, ... 0.90.
fn thresholds() -> Vec<f64> {
    (0..=12).map(|i| 0.30 + 0.05 * f64::from(i)).collect()
}

/// Runs the evaluation.
pub async fn run(args: AccuracyArgs) -> anyhow::Result<()> {
    let febrl_sets = match &args.febrl {
        Some(dir) => read_febrl(dir)?,
        None => Vec::new(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let sweeps = with_workspace("accuracy", async |ws| {
        let db = ws.pool(PoolSettings::default()).await?;
        let mut conn = db.acquire().await?;
        let mut sweeps = vec![generated(&mut conn, &args).await?];
        for (name, originals, duplicates) in &febrl_sets {
            sweeps.push(febrl_sweep(&mut conn, name, originals, duplicates).await?);
        }
        drop(conn);
        db.close().await;
        Ok(sweeps)
    })
    .await?;
    let json = args.out.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&sweeps)?)
        .with_context(|| format!("writing {}", json.display()))?;
    for s in &sweeps {
        print!("{}", markdown(s));
    }
    eprintln!("pgperf: wrote {}", json.display());
    Ok(())
}

async fn generated(conn: &mut PgConnection, args: &AccuracyArgs) -> anyhow::Result<Sweep> {
    let load = copy_entities(&mut *conn, dataset::entities(SEED, args.entities)).await?;
    let first = load.first_id.context("no entity was loaded")?;
    let names: Vec<Labelled> = labelled::evaluation_set(SEED, args.entities, args.names)
        .into_iter()
        .map(|l| Labelled {
            name: NameToResolve {
                name: l.name,
                kind: l.kind,
            },
            truth: l.truth.map(|i| first + i as i64),
            group: l.variation.as_str(),
        })
        .collect();
    sweep(conn, "generated", args.entities, &names).await
}

type FebrlSet = (&'static str, Vec<Person>, Vec<Person>);

fn read_febrl(dir: &Path) -> anyhow::Result<Vec<FebrlSet>> {
    let mut sets = Vec::new();
    for (name, files) in FEBRL_SETS {
        let mut people = Vec::new();
        for file in files {
            people.extend(febrl::read(&dir.join(file))?);
        }
        let (originals, duplicates) = people.into_iter().partition(|p| p.original);
        sets.push((name, originals, duplicates));
    }
    Ok(sets)
}

async fn febrl_sweep(
    conn: &mut PgConnection,
    name: &str,
    originals: &[Person],
    duplicates: &[Person],
) -> anyhow::Result<Sweep> {
    sqlx::query("TRUNCATE entities CASCADE")
        .execute(&mut *conn)
        .await?;
    let rows = originals.iter().map(|p| {
        let entity = NewEntity {
            kind: EntityKind::Person,
            name: p.name_and_address(),
            attributes: serde_json::json!({ "febrl_key": p.key }),
        };
        (entity, Vec::new())
    });
    let load = copy_entities(&mut *conn, rows)
        .await
        .with_context(|| format!("loading {name}'s originals"))?;
    let first = load.first_id.context("no FEBRL original was loaded")?;
    let id_of: std::collections::HashMap<u64, i64> = originals
        .iter()
        .enumerate()
        .map(|(i, p)| (p.key, first + i as i64))
        .collect();
    let names: Vec<Labelled> = duplicates
        .iter()
        .map(|d| Labelled {
            name: NameToResolve {
                name: d.name_and_address(),
                kind: EntityKind::Person,
            },
            truth: id_of.get(&d.key).copied(),
            group: if id_of.contains_key(&d.key) {
                "duplicate"
            } else {
                "no_original"
            },
        })
        .collect();
    sweep(conn, name, originals.len() as u64, &names).await
}

async fn sweep(
    conn: &mut PgConnection,
    data: &str,
    entities: u64,
    names: &[Labelled],
) -> anyhow::Result<Sweep> {
    pgperf::db::ingest::analyze_entities(&mut *conn).await?;
    let default = Thresholds::default();
    // Resolution's work depends on the review threshold (names below it take the trigram
    // pass), not on the match threshold: one run at the default review serves every match
    // threshold from it up, one at the lowest serves those below.
    let low = resolve_all(conn, names, LOWEST).await?;
    let usual = resolve_all(conn, names, default.review).await?;
    let mut points = Vec::new();
    let mut recall_by_group = Vec::new();
    for t in thresholds() {
        let (tops, took) = if t < default.review { &low } else { &usual };
        let predicted: Vec<Option<i64>> = tops
            .iter()
            .map(|top| top.filter(|(_, score)| *score >= t).map(|(id, _)| id))
            .collect();
        let mut confusion = Confusion::default();
        for (l, p) in names.iter().zip(&predicted) {
            confusion.add(l.truth, *p);
        }
        let point = Point {
            threshold: (t * 100.0).round() / 100.0,
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
            us_per_name: took.as_secs_f64() * 1e6 / names.len().max(1) as f64,
            confusion,
        };
        eprintln!(
            "pgperf: {data} at {t:.2}: precision {:.3}, recall {:.3}, F1 {:.3}, {:.0} µs per name",
            point.precision, point.recall, point.f1, point.us_per_name
        );
        if (t - default.matched).abs() < 1e-9 {
            recall_by_group = by_group(names, &predicted);
        }
        points.push(point);
    }
    Ok(Sweep {
        data: data.to_owned(),
        entities,
        names: names.len(),
        points,
        recall_by_group,
    })
}

/// The lowest threshold of the sweep.
const LOWEST: f64 = 0.30;

/// Every name's top candidate (id and score), resolved in batches with `review`, and the
/// time it took.
async fn resolve_all(
    conn: &mut PgConnection,
    names: &[Labelled],
    review: f64,
) -> anyhow::Result<(Vec<Option<(i64, f64)>>, Duration)> {
    let thresholds = Thresholds {
        matched: Thresholds::default().matched.max(review),
        review,
    };
    let mut tops = Vec::with_capacity(names.len());
    let started = Instant::now();
    for chunk in names.chunks(MAX_BATCH) {
        let batch: Vec<NameToResolve> = chunk.iter().map(|l| l.name.clone()).collect();
        let answers = resolve_batch(&mut *conn, &batch, thresholds).await?;
        tops.extend(
            answers
                .iter()
                .map(|a| a.candidates.first().map(|c| (c.id, c.score))),
        );
    }
    Ok((tops, started.elapsed()))
}

/// Recall (right links over names of the group; for names without an entity, the share
/// rightly left unlinked) per group.
fn by_group(names: &[Labelled], predicted: &[Option<i64>]) -> Vec<(String, f64, usize)> {
    let mut groups: Vec<&str> = names.iter().map(|l| l.group).collect();
    groups.sort_unstable();
    groups.dedup();
    groups
        .into_iter()
        .map(|g| {
            let members: Vec<_> = names
                .iter()
                .zip(predicted)
                .filter(|(l, _)| l.group == g)
                .collect();
            let right = members.iter().filter(|(l, p)| l.truth == **p).count();
            (
                g.to_owned(),
                right as f64 / members.len() as f64,
                members.len(),
            )
        })
        .collect()
}

fn markdown(s: &Sweep) -> String {
    let mut out = format!(
        "\n{}: {} entities, {} names\n\n| Threshold | Precision | Recall | F1 | µs per name |\n|---:|---:|---:|---:|---:|\n",
        s.data, s.entities, s.names
    );
    for p in &s.points {
        out += &format!(
            "| {:.2} | {:.3} | {:.3} | {:.3} | {:.0} |\n",
            p.threshold, p.precision, p.recall, p.f1, p.us_per_name
        );
    }
    out += &format!(
        "\nRight answers by kind of name at the default match threshold ({:.2}):\n\n| Kind | Right | Names |\n|---|---:|---:|\n",
        Thresholds::default().matched
    );
    for (g, share, n) in &s.recall_by_group {
        out += &format!("| {g} | {share:.3} | {n} |\n");
    }
    out
}

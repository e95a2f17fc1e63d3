//! `pgperf ab --base REV`: the paired guard. The base revision is built beside the running
//! binary (the head), both run as workers against one PostgreSQL server, each on a database
//! of its own build's migrations, and every case is measured in alternating rounds (ABBA), so
//! that drift of the machine hits both sides alike. A case fails when the head is slower
//! with confidence ([`pgperf::perf::paired`]) or when a counter grew (an added round trip, a
//! lost index); a slowdown named in `--accept` or a `Perf-accepted:` commit trailer is reported
//! and passes.

mod build;
mod compare;
mod protocol;
mod report;
mod side;
pub mod worker;

/// The server setting that makes `pg_stat_statements` count statements in functions and
/// triggers.
const NESTED_TRACKING: &str = "pg_stat_statements.track=all";

use std::path::PathBuf;

use anyhow::Context;
use pgperf::db::DatabaseUrl;
use pgperf::perf::paired::Rule;
use pgperf::perf::wire::Relay;
use pgperf::postgres::Server;

use super::{Failure, place_for_timing};
use build::{Builds, Revision};
use pgperf_testbed::placement::{Placed, WhenBusy};
use side::Side;

/// Options of `pgperf ab`.
#[derive(Debug, clap::Args)]
pub struct AbArgs {
    /// The revision to compare with (a SHA, a branch, HEAD~1). The head is this binary.
    #[arg(long)]
    pub base: String,
    /// Only cases whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Rounds per case (each measures a batch on both sides).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(5..=1000))]
    pub rounds: u32,
    /// Target time of one batch, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub batch_ms: u64,
    /// A case fails only when its interval's lower bound is above this ratio.
    #[arg(long, default_value_t = 1.10)]
    pub threshold: f64,
    /// ...and its point estimate is at least this ratio.
    #[arg(long, default_value_t = 1.25)]
    pub min_effect: f64,
    /// A case whose slowdown is intended: reported, not failed (repeatable). Commits between
    /// the base and HEAD may say the same with a `Perf-accepted: <case>` trailer.
    #[arg(long)]
    pub accept: Vec<String>,
    /// Directory for ab.json, summary.md and the workers' logs (the binaries are kept in the
    /// target folder's pgperf-ab-bin/).
    #[arg(long, default_value = "target/pgperf/ab")]
    pub results: PathBuf,
}

impl AbArgs {
    fn rule(&self) -> Result<Rule, Failure> {
        if !(self.threshold >= 1.0 && self.min_effect >= self.threshold) {
            return Err(Failure::Usage(format!(
                "--threshold {} and --min-effect {} must satisfy 1 <= threshold <= min-effect",
                self.threshold, self.min_effect
            )));
        }
        Ok(Rule {
            threshold: self.threshold,
            min_effect: self.min_effect,
            ..Rule::default()
        })
    }
}

/// The machine as the workers see it: the set-ups of `scripts/check-portability`, read here
/// at the edge (`docker update` arguments for the container, `PGPERF_CONTAINER_UPDATE`, and a
/// delay on every client message, `PGPERF_WIRE_DELAY_US`, through a relay whose URL the
/// workers then get), and the client and the server placed apart. Held while they run.
struct Machine {
    admin: DatabaseUrl,
    _relay: Option<Relay>,
    _placed: Placed,
}

fn machine_setup(server: &Server, testbed: &pgperf_testbed::Settings) -> anyhow::Result<Machine> {
    let placed = place_for_timing(server, testbed, WhenBusy::PlaceAnyway)?;
    let admin = server.admin_url().clone();
    let Some(delay) = pgperf_harness::Settings::from_env()?.wire_delay else {
        return Ok(Machine {
            admin,
            _relay: None,
            _placed: placed,
        });
    };
    let relay = Relay::start(&admin.host_port(), delay)?;
    eprintln!("pgperf ab: every client message is delayed by {delay:?}");
    Ok(Machine {
        admin: admin.via("127.0.0.1", relay.port())?,
        _relay: Some(relay),
        _placed: placed,
    })
}

/// Starts both workers on `server` and compares the cases.
async fn compare_on(
    server: &Server,
    testbed: &pgperf_testbed::Settings,
    bins: [&std::path::Path; 2],
    args: &AbArgs,
    plan: &compare::Plan,
) -> anyhow::Result<Vec<compare::CaseResult>> {
    let machine = machine_setup(server, testbed)?;
    let admin = &machine.admin;
    std::fs::create_dir_all(&args.results)
        .with_context(|| format!("creating {}", args.results.display()))?;
    let log = |side: &str| args.results.join(format!("{side}.log"));
    let base = Side::spawn("base", bins[0], admin, &log("base")).await?;
    let head = Side::spawn("head", bins[1], admin, &log("head")).await?;
    compare::run_all(base, head, plan).await
}

/// Runs the paired comparison; fails when a case is slower or counts more.
pub async fn run(args: AbArgs) -> anyhow::Result<()> {
    let builds = Builds::here()?;
    let base_rev = Revision::resolve(&builds.repo, &args.base)?;
    let mut accepted = args.accept.clone();
    accepted.extend(compare::accepted_in_commits(&builds.repo, &base_rev));
    let plan = compare::Plan {
        rule: args.rule()?,
        rounds: args.rounds,
        batch: std::time::Duration::from_millis(args.batch_ms),
        filter: args.filter.clone(),
        accepted,
    };
    let head_bin = builds.head()?;
    let base_bin = builds.base(&base_rev)?;
    builds.restore_head(&head_bin)?;
    eprintln!("pgperf ab: starting PostgreSQL (or reaching PGPERF_DATABASE_URL) ...");
    // Statements in functions and triggers are counted here (the nested-statements counter):
    // both sides pay the tracking alike. The suite's container does not track them, as
    // tracking slowed the seed's writes ~10x against the committed baselines.
    let testbed = pgperf_testbed::Settings::from_env()?;
    let server = Server::start(&testbed, &[NESTED_TRACKING.to_owned()]).await?;
    let result = compare_on(&server, &testbed, [&base_bin, &head_bin], &args, &plan).await;
    server.shutdown().await;
    let _ = std::fs::remove_file(&head_bin);
    let results = result?;
    let title = format!(
        "pgperf ab: head against {} ({})",
        base_rev.given,
        base_rev.short()
    );
    report::write(&args.results, &title, &results)?;
    println!("{}", report::table(&results));
    let failed: Vec<_> = results.iter().filter(|r| r.fails()).collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Failure::Regressed(report::failure_text(&failed, &base_rev)).into())
}

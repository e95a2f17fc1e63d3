//! The pgperf command line. Its main job, `pgperf run`, runs the suite's scenarios as a
//! benchmark against a container (or PGPERF_DATABASE_URL) and prints a report.

#![warn(clippy::too_many_lines)]

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "pgperf",
    version,
    about = "PostgreSQL data layer benchmarks and guards",
    after_help = "Exit codes: 0 success, 1 a case regressed, 2 usage error, 3 any other error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The main job: runs every scenario as a benchmark and compares it with the baseline.
    Run(cli::run::RunArgs),
    /// The paired guard: this build against a base revision, measured side by side in
    /// alternating rounds; fails on a confident slowdown or a counter that grew.
    Ab(cli::ab::AbArgs),
    /// One side of `pgperf ab` (started by it; speaks JSON lines on stdin and stdout).
    #[command(hide = true)]
    AbWorker,
    /// Primary-key lookups through the harness versus pgbench -S -M prepared, as ratios.
    ComparePgbench(cli::pgbench::PgbenchArgs),
    /// Bulk ingestion through pgperf's COPY versus psql \copy of the same rows, as ratios.
    IngestBench(cli::ingest_bench::IngestArgs),
    /// Search and resolution at 1k to 1M entities: percentiles, growth exponents, an SVG plot.
    Scale(cli::scale::ScaleArgs),
    /// Resolution's precision, recall and F1 at thresholds 0.30-0.90, on generated labelled
    /// names and (with --febrl) on FEBRL's data sets.
    Accuracy(cli::accuracy::AccuracyArgs),
    /// The HTTP API: health endpoints, entities, search and resolution.
    Serve(cli::serve::ServeArgs),
    /// Load tests against the API service (goose): smoke, throughput, load, stress, spike, soak.
    Load(cli::load::LoadArgs),
    /// The hostile-client checks aimed at a running service: huge inputs, a batch flood,
    /// distinct cache keys, invented methods, idle connections; each against its bound.
    Abuse(cli::abuse::AbuseArgs),
    /// The webhook receiver of Alertmanager's notifications: logs each as a JSON line and can
    /// forward it to a Slack-compatible webhook.
    AlertSink(cli::alert_sink::AlertSinkArgs),
    /// The trend of past load runs: a table and an SVG plot.
    History(cli::load::history::HistoryArgs),
    /// The API service's figures in one run: cached search over HTTP against the data layer,
    /// /health/database at a fixed rate, 1,000 concurrent keep-alive connections.
    ServeBench(cli::serve_bench::ServeBenchArgs),
    /// Starts (or reaches) the server, applies the migrations to a template, and reports timings.
    CheckServer,
}

/// The log filter unless `PGPERF_LOG` gives one: warnings. The service keeps sqlx's
/// slow-statement warnings (an operator wants them); the measuring commands drop them, as
/// their slow statements are the measured work, and each would print a whole SQL text
/// between the result lines.
fn default_log_filter(command: &Command) -> &'static str {
    match command {
        Command::Serve(_) => "warn",
        _ => "warn,sqlx::query=error",
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGPERF_LOG")
                .unwrap_or_else(|_| default_log_filter(&cli.command).into()),
        )
        .with_writer(|| MaskingStderr)
        .init();
    // Ctrl-C or a CI job's SIGTERM removes the run's container, databases and files first.
    pgperf::postgres::cleanup::on_signals();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(run(cli));
    pgperf::postgres::cleanup::wait_if_interrupted();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgperf: error: {e:#}");
            std::process::ExitCode::from(cli::exit_code(&e))
        }
    }
}

/// Standard error for log lines, with every password the process knows masked (Docker's
/// client logs a container's environment at debug level). Each event arrives in one write.
struct MaskingStderr;

impl std::io::Write for MaskingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let masked = pgperf::db::mask_known_secrets(&text);
        std::io::stderr().write_all(masked.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => cli::run::run(args).await,
        Command::Ab(args) => cli::ab::run(args).await,
        Command::AbWorker => cli::ab::worker::run().await,
        Command::ComparePgbench(args) => cli::pgbench::run(args).await,
        Command::IngestBench(args) => cli::ingest_bench::run(args).await,
        Command::Scale(args) => cli::scale::run(args).await,
        Command::Accuracy(args) => cli::accuracy::run(args).await,
        Command::Serve(args) => cli::serve::run(args).await,
        Command::ServeBench(args) => cli::serve_bench::run(args).await,
        Command::Load(args) => cli::load::run(args).await,
        Command::Abuse(args) => cli::abuse::run(args).await,
        Command::History(args) => cli::load::history::run(args),
        Command::AlertSink(args) => cli::alert_sink::run(args).await,
        Command::CheckServer => cli::check_server::run().await,
    }
}

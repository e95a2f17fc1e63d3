//! The pgperf command line. Its main job, `pgperf run`, runs the suite's scenarios as a
//! benchmark against a container (or PGPERF_DATABASE_URL) and prints a report.

mod cli;

use anyhow::Context;
use clap::{Parser, Subcommand};

use pgperf::server::{Server, Template};

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
    /// Primary-key lookups through the harness versus pgbench -S -M prepared, as ratios.
    ComparePgbench(cli::pgbench::PgbenchArgs),
    /// Bulk ingestion through pgperf's COPY versus psql \copy of the same rows, as ratios.
    IngestBench(cli::ingest_bench::IngestArgs),
    /// Starts (or reaches) the server, applies the migrations to a template, and reports timings.
    CheckServer,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGPERF_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgperf: error: {e:#}");
            std::process::ExitCode::from(cli::exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => cli::run::run(args).await,
        Command::ComparePgbench(args) => cli::pgbench::run(args).await,
        Command::IngestBench(args) => cli::ingest_bench::run(args).await,
        Command::CheckServer => check_server().await,
    }
}

async fn check_server() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let server = Server::from_env().await?;
    let ready = started.elapsed();
    let result = async {
        let t = std::time::Instant::now();
        let template = Template::ensure(server.admin_url()).await?;
        let migrated = t.elapsed();
        let mut clones = Vec::new();
        for i in 0..10 {
            let t = std::time::Instant::now();
            let name = format!("pgperf_check_{}_{i}", std::process::id());
            server.clone_database(&template, &name).await?;
            clones.push(t.elapsed());
            server.drop_database(&name).await?;
        }
        clones.sort();
        println!("server     {}", server.admin_url());
        println!("ready in   {:.2} s", ready.as_secs_f64());
        println!(
            "template   {} ({:.0} ms)",
            template.name(),
            migrated.as_secs_f64() * 1e3
        );
        println!(
            "clone      median {:.1} ms, max {:.1} ms (10 clones)",
            clones[5].as_secs_f64() * 1e3,
            clones[9].as_secs_f64() * 1e3
        );
        anyhow::Ok(())
    }
    .await
    .context("preparing databases on the server");
    server.shutdown().await;
    result
}

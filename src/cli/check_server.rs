//! `pgperf check-server`: is the server there, and how fast does it prepare databases?

use anyhow::Context;

use pgperf::postgres::{Server, Template};

/// Starts (or reaches) the server, applies the migrations to a template, clones it ten times
/// and prints how long each step took.
pub async fn run() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let server = Server::from_env().await?;
    let ready = started.elapsed();
    let result = async {
        let t = std::time::Instant::now();
        let template = Template::ensure(server.admin_url()).await?;
        let migrated = t.elapsed();
        let mut clones = Vec::new();
        for _ in 0..10 {
            let t = std::time::Instant::now();
            let name = pgperf::postgres::database_name("check");
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

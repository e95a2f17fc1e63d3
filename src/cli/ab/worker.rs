//! `pgperf ab-worker`: one side of a paired run. It clones a database from its own build's
//! migrated template (the two sides' migrations may differ), seeds it, and then measures
//! and counts cases as the driver asks, until told to quit or its input ends.

use std::time::Instant;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use pgperf::db::{DatabaseUrl, Db};
use pgperf::postgres::{Server, Template};
use pgperf::scenarios::{self, AREAS, Case, suite};

use super::protocol::{PROTOCOL, Reply, Request, SERVER_URL_VAR};

/// A seeded database of this build.
struct Side {
    server: Server,
    name: String,
    db: Db,
}

impl Side {
    async fn prepare(admin: DatabaseUrl) -> anyhow::Result<Self> {
        let server = Server::external(admin);
        let template = Template::ensure(server.admin_url()).await?;
        let name = pgperf::postgres::database_name("ab");
        let url = server.clone_database(&template, &name).await?;
        let db = Db::connect(&url, scenarios::pool_settings()).await?;
        scenarios::seed(&db).await?;
        Ok(Self { server, name, db })
    }

    async fn close(self) {
        self.db.close().await;
        if let Err(e) = self.server.drop_database(&self.name).await {
            eprintln!("pgperf ab-worker: could not drop {}: {e}", self.name);
        }
    }

    async fn answer(&self, request: Request) -> Reply {
        let result = match request {
            Request::Measure {
                case,
                iterations,
                warmup,
            } => self.measure(&case, iterations, warmup).await,
            Request::Count { case } => self.count(&case).await,
            Request::Prepare | Request::Quit => Err(anyhow::anyhow!("already prepared")),
        };
        result.unwrap_or_else(|e| Reply::Failed {
            message: format!("{e:#}"),
        })
    }

    async fn measure(&self, case: &str, iterations: u64, warmup: u64) -> anyhow::Result<Reply> {
        let case = find(case)?;
        suite::settle(&self.db).await;
        let batch = scenarios::sample(&self.db, &case, (iterations, warmup), None).await?;
        Ok(Reply::Measured(batch.summary))
    }

    async fn count(&self, case: &str) -> anyhow::Result<Reply> {
        let case = find(case)?;
        suite::settle(&self.db).await;
        Ok(Reply::Counted(scenarios::count(&self.db, &case).await?))
    }
}

fn find(name: &str) -> anyhow::Result<Case> {
    AREAS
        .iter()
        .flat_map(|a| scenarios::cases(*a))
        .find(|c| c.name.as_str() == name)
        .with_context(|| format!("this build has no case {name}"))
}

async fn send(out: &mut tokio::io::Stdout, reply: &Reply) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(reply)?;
    line.push('\n');
    out.write_all(line.as_bytes()).await?;
    Ok(out.flush().await?)
}

/// Serves the driver on standard input and output.
pub async fn run() -> anyhow::Result<()> {
    let mut out = tokio::io::stdout();
    let cases = scenarios::case_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    send(
        &mut out,
        &Reply::Hello {
            protocol: PROTOCOL,
            cases,
        },
    )
    .await?;
    let admin = std::env::var(SERVER_URL_VAR).with_context(|| {
        format!("{SERVER_URL_VAR} is not set: ab-worker is started by pgperf ab")
    })?;
    let admin = DatabaseUrl::parse(&admin).context(SERVER_URL_VAR)?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut side: Option<Side> = None;
    while let Some(line) = lines.next_line().await? {
        let request: Request = serde_json::from_str(&line).context("a request from pgperf ab")?;
        let reply = match (request, &side) {
            (Request::Quit, _) => break,
            (Request::Prepare, None) => {
                let started = Instant::now();
                match Side::prepare(admin.clone()).await {
                    Ok(s) => {
                        side = Some(s);
                        Reply::Ready {
                            seconds: started.elapsed().as_secs_f64(),
                        }
                    }
                    Err(e) => Reply::Failed {
                        message: format!("preparing the database: {e:#}"),
                    },
                }
            }
            (request, Some(s)) => s.answer(request).await,
            (_, None) => Reply::Failed {
                message: "not prepared".to_owned(),
            },
        };
        send(&mut out, &reply).await?;
    }
    if let Some(s) = side {
        s.close().await;
    }
    Ok(())
}

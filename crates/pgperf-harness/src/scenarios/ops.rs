//! The measured operations. Each builds one state per task (its own connection, counter or
//! random generator) so tasks share nothing on the hot path but the pool.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Case;
use super::plans::encode;
use super::seed::{ENTITIES, SEED};
use crate::dataset;
use crate::db::ingest::{copy_records, insert_records_unnest, upsert_records};
use crate::db::name_score::name_score;
use crate::db::repo::entities;
use crate::db::resolve::{NameToResolve, Thresholds, resolve_batch};
use crate::db::search::{self, SearchRequest};
use crate::db::search_cache::SearchCache;
use crate::db::unit_of_work::create_entity_with_aliases;
use crate::db::{
    Db, DbError, EntityChanges, EntityKind, MeteredConnection, NewEntity, NewSourceRecord,
    PoolSettings, normalize_name,
};
use crate::perf::{Measurement, Operation, PerfError, Slowdown, measure_from};

/// What a case does, once per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `SELECT 1` on a held connection.
    SelectOne,
    /// Read one entity by primary key.
    EntityById,
    /// Fuzzy search of a noisy name with pg_trgm.
    TrigramSearch,
    /// Insert one entity.
    CreateEntity,
    /// Optimistic-lock update of the task's own entity.
    UpdateEntity,
    /// A keyset page of 50 organizations from a random point.
    ListPage,
    /// Batch read of 50 random ids.
    GetMany,
    /// The same 50 random ids read one query each: the N+1 shape of [`Op::GetMany`], kept to
    /// prove that the counters catch it (it is in no area).
    GetManyOneByOne,
    /// Entity plus two aliases in one transaction, committed.
    CommitUnit,
    /// A transaction that inserts an entity, then fails and rolls back.
    RollbackUnit,
    /// COPY of 1 000 new source records.
    Copy1k,
    /// Upsert of the same 1 000 source records (updates after the first).
    Upsert1k,
    /// Multi-row UNNEST insert of 1 000 new source records.
    Unnest1k,
    /// The full checkout cycle of an idle connection: acquire it and return it, on a pool of
    /// one connection, so each acquire waits for the previous return (sqlx pings a returned
    /// connection in a task of its own). Timed one after the other, the cycle is one round trip
    /// plus the pool's bookkeeping; with spare connections the next acquire would overlap the
    /// previous return's ping, and a busy core would slow that overlap twice over.
    AcquireIdle,
    /// Acquire, `SELECT 1`, return, with 4x as many tasks as connections: the case's tasks
    /// share a pool of one connection, so each acquire queues behind the others' checkouts.
    /// One connection keeps the case serial like the reference (one checkout at a time); with
    /// 16 tasks on 4 connections it kept both cores busy, and a process hogging one core
    /// slowed it ~2x where the reference could not see it.
    AcquireContended,
    /// Open a new connection through a fresh pool (TCP, authentication), then close it.
    AcquireNewConnection,
    /// A search for a noisy name (see [`super::plans::noisy_name`]), without the cache.
    Search,
    /// A search through the cache, over a set of 20 queries (cached during the warm-up).
    SearchCached,
    /// Resolution of one noisy name.
    ResolveOne,
    /// Resolution of 10 noisy names in one statement.
    ResolveBatch10,
    /// The client's share of a resolution, alone: a noisy name scored word by word against
    /// [`SCORED_CANDIDATES`] normalized names (no database). Resolution's own cases are
    /// dominated by their SQL passes, so a change to scoring's CPU shows here first.
    ScoreNames,
    /// `GET /search` through the API service (on 127.0.0.1, keep-alive), over the 20 cached
    /// queries of [`Op::SearchCached`]: the service's cost on top of the data layer's.
    HttpSearchCached,
    /// `GET /search` of a noisy name through the API service, with entries expiring at once
    /// so that every request misses the cache: lookup, search and store.
    HttpSearchUncached,
}

type DbOp<S> = Operation<S, DbError>;

fn org(name: String) -> NewEntity {
    NewEntity {
        kind: EntityKind::Organization,
        name,
        attributes: json!({"bench": true}),
    }
}

async fn connections(db: &Db, n: usize) -> Result<Vec<MeteredConnection>, DbError> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(db.acquire().await?);
    }
    Ok(v)
}

fn rngs(n: usize) -> Vec<ChaCha8Rng> {
    (0..n as u64)
        .map(|t| ChaCha8Rng::seed_from_u64(SEED + t))
        .collect()
}

fn random_id(rng: &mut ChaCha8Rng) -> i64 {
    rng.random_range(1..=ENTITIES as i64)
}

/// Batches made so far by this process: new batches never repeat a key, whichever case,
/// measurement or re-measurement makes them.
static BATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// 1 000 records; `fresh` gives them keys no other batch has, otherwise the keys are fixed
/// (for upserts that update).
fn batch(fresh: bool) -> Vec<NewSourceRecord> {
    let tag = if fresh {
        BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    } else {
        0
    };
    dataset::records(SEED, 1_000, ENTITIES)
        .map(|mut r| {
            r.external_id = format!("{}-b{tag}", r.external_id);
            r
        })
        .collect()
}

/// One measurement of a case: what every operation's builder needs.
struct Run<'a> {
    db: &'a Db,
    case: &'a Case,
    slowdown: Option<Slowdown>,
    /// Tasks (one state each).
    n: usize,
}

type Outcome<T> = Result<(Measurement, T), PerfError>;

/// Measures `case` on `db`; `at_start` runs when recording starts (see [`measure_from`]).
pub(super) async fn run<T>(
    db: &Db,
    case: &Case,
    slowdown: Option<Slowdown>,
    at_start: impl Future<Output = T>,
) -> Outcome<T> {
    let r = Run {
        db,
        case,
        slowdown,
        n: case.config.concurrency.max(1),
    };
    match case.op {
        Op::SelectOne => r.select_one(at_start).await,
        Op::EntityById => r.with_rng(at_start, entity_by_id()).await,
        Op::TrigramSearch => r.with_rng(at_start, trigram_search()).await,
        Op::ListPage => r.with_rng(at_start, list_page()).await,
        Op::GetMany => r.with_rng(at_start, get_many()).await,
        Op::GetManyOneByOne => r.with_rng(at_start, get_many_one_by_one()).await,
        Op::CreateEntity => r.create_entity(at_start).await,
        Op::UpdateEntity => r.update_entity(at_start).await,
        Op::CommitUnit => r.commit_unit(at_start).await,
        Op::RollbackUnit => r.rollback_unit(at_start).await,
        Op::Copy1k | Op::Unnest1k | Op::Upsert1k => r.ingest(at_start).await,
        Op::AcquireIdle | Op::AcquireContended => r.acquire(at_start).await,
        Op::AcquireNewConnection => r.acquire_new_connection(at_start).await,
        Op::Search => r.with_rng(at_start, search_uncached()).await,
        Op::SearchCached => r.search_cached(at_start).await,
        Op::ResolveOne => r.with_rng(at_start, resolve_names(1)).await,
        Op::ResolveBatch10 => r.with_rng(at_start, resolve_names(10)).await,
        Op::ScoreNames => Ok(r.score_names(at_start).await),
        Op::HttpSearchCached => r.http_search(at_start, true).await,
        Op::HttpSearchUncached => r.http_search(at_start, false).await,
    }
}

type WithRng = DbOp<(MeteredConnection, ChaCha8Rng)>;

fn entity_by_id() -> WithRng {
    Arc::new(|(c, rng)| Box::pin(async move { entities::get(c, random_id(rng)).await.map(drop) }))
}

fn trigram_search() -> WithRng {
    Arc::new(|(c, rng)| {
        let query = noisy(rng);
        Box::pin(async move { entities::search_similar(c, &query, 10).await.map(drop) })
    })
}

fn list_page() -> WithRng {
    Arc::new(|(c, rng)| {
        let after = Some(random_id(rng));
        Box::pin(async move {
            entities::list(c, Some(EntityKind::Organization), after, 50)
                .await
                .map(drop)
        })
    })
}

fn get_many() -> WithRng {
    Arc::new(|(c, rng)| {
        let ids: Vec<i64> = (0..50).map(|_| random_id(rng)).collect();
        Box::pin(async move { entities::get_many(c, &ids).await.map(drop) })
    })
}

fn get_many_one_by_one() -> WithRng {
    Arc::new(|(c, rng)| {
        let ids: Vec<i64> = (0..50).map(|_| random_id(rng)).collect();
        Box::pin(async move {
            for id in ids {
                entities::get(c, id).await?;
            }
            Ok(())
        })
    })
}

/// Queries the cached-search case cycles through.
const CACHED_QUERIES: u64 = 20;

fn noisy(rng: &mut ChaCha8Rng) -> String {
    super::plans::noisy_name(rng.random_range(0..ENTITIES))
}

fn search_uncached() -> WithRng {
    Arc::new(|(c, rng)| {
        let req = SearchRequest::new(noisy(rng), 10);
        Box::pin(async move { search::search(c, &req).await.map(drop) })
    })
}

fn resolve_names(n: usize) -> WithRng {
    Arc::new(move |(c, rng)| {
        let names: Vec<NameToResolve> = (0..n)
            .map(|_| NameToResolve {
                name: noisy(rng),
                kind: EntityKind::Organization,
            })
            .collect();
        Box::pin(async move {
            resolve_batch(c, &names, Thresholds::default())
                .await
                .map(drop)
        })
    })
}

/// Candidates [`Op::ScoreNames`] scores a name against: about what resolution's first pass
/// keeps for one name.
pub const SCORED_CANDIDATES: u64 = 200;

/// [`Op::ScoreNames`]' state: the candidates, the noisy names it cycles through (made and
/// normalized beforehand, so that the case times scoring alone), and the next one.
type Scoring = (Arc<Vec<String>>, Vec<String>, usize);

fn score_names() -> Operation<Scoring, DbError> {
    Arc::new(|(candidates, names, next)| {
        let name = &names[*next % names.len()];
        *next += 1;
        for candidate in candidates.iter() {
            std::hint::black_box(name_score(name, candidate));
        }
        Box::pin(std::future::ready(Ok(())))
    })
}

impl Run<'_> {
    async fn score_names<T>(&self, at_start: impl Future<Output = T>) -> (Measurement, T) {
        let candidates: Arc<Vec<String>> = Arc::new(
            (0..SCORED_CANDIDATES)
                .map(|i| normalize_name(&dataset::entity_name(SEED, i)))
                .collect(),
        );
        let states = rngs(self.n)
            .into_iter()
            .map(|mut rng| {
                let names = (0..64).map(|_| normalize_name(&noisy(&mut rng))).collect();
                (Arc::clone(&candidates), names, 0)
            })
            .collect();
        self.go(states, score_names(), at_start).await
    }

    async fn go<S: Send + 'static, E: std::fmt::Display + Send + 'static, T>(
        &self,
        states: Vec<S>,
        op: Operation<S, E>,
        at_start: impl Future<Output = T>,
    ) -> (Measurement, T) {
        let config = crate::perf::MeasureConfig {
            concurrency: states.len(),
            ..self.case.config
        };
        measure_from(config, states, op, self.slowdown, at_start).await
    }

    async fn select_one<T>(&self, at_start: impl Future<Output = T>) -> Outcome<T> {
        let op: DbOp<MeteredConnection> = Arc::new(|c| {
            Box::pin(async move {
                sqlx::query("SELECT 1")
                    .execute(&mut **c)
                    .await
                    .map(drop)
                    .map_err(DbError::from)
            })
        });
        let states = connections(self.db, self.n).await?;
        Ok(self.go(states, op, at_start).await)
    }

    /// Operations on a held connection with a random generator per task.
    async fn with_rng<T>(&self, at_start: impl Future<Output = T>, op: WithRng) -> Outcome<T> {
        let conns = connections(self.db, self.n).await?;
        let states: Vec<_> = conns.into_iter().zip(rngs(self.n)).collect();
        Ok(self.go(states, op, at_start).await)
    }

    async fn create_entity<T>(&self, at_start: impl Future<Output = T>) -> Outcome<T> {
        let conns = connections(self.db, self.n).await?;
        let states: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(t, c)| (c, t, 0u64))
            .collect();
        let op: DbOp<(MeteredConnection, usize, u64)> = Arc::new(|(c, t, i)| {
            *i += 1;
            let new = org(format!("Bench Created {t} {i}"));
            Box::pin(async move { entities::create(c, &new).await.map(drop) })
        });
        Ok(self.go(states, op, at_start).await)
    }

    /// Each task updates an entity of its own, carrying its version (optimistic lock).
    async fn update_entity<T>(&self, at_start: impl Future<Output = T>) -> Outcome<T> {
        let mut states = Vec::new();
        for (t, mut c) in connections(self.db, self.n).await?.into_iter().enumerate() {
            let e = entities::create(&mut c, &org(format!("Bench Updated {t}"))).await?;
            states.push((c, e.id, e.version));
        }
        let op: DbOp<(MeteredConnection, i64, i32)> = Arc::new(|(c, id, version)| {
            Box::pin(async move {
                let changes = EntityChanges {
                    attributes: Some(json!({"version_seen": *version})),
                    name: None,
                };
                *version = entities::update(c, *id, *version, &changes).await?.version;
                Ok(())
            })
        });
        Ok(self.go(states, op, at_start).await)
    }

    async fn commit_unit<T>(&self, at_start: impl Future<Output = T>) -> Outcome<T> {
        let states: Vec<_> = (0..self.n).map(|t| (self.db.clone(), t, 0u64)).collect();
        let op: DbOp<(Db, usize, u64)> = Arc::new(|(db, t, i)| {
            *i += 1;
            let new = org(format!("Bench Unit {t} {i}"));
            let aliases = vec![format!("Unit {t} {i} A"), format!("Unit {t} {i} B")];
            Box::pin(async move {
                create_entity_with_aliases(db, &new, &aliases)
                    .await
                    .map(drop)
            })
        });
        Ok(self.go(states, op, at_start).await)
    }

    /// A unit of work that inserts an entity and is rolled back: checkout, BEGIN, INSERT,
    /// ROLLBACK, return.
    async fn rollback_unit<T>(&self, at_start: impl Future<Output = T>) -> Outcome<T> {
        let states: Vec<_> = (0..self.n).map(|t| (self.db.clone(), t)).collect();
        let op: DbOp<(Db, usize)> = Arc::new(|(db, t)| {
            let new = org(format!("Bench Rollback {t}"));
            Box::pin(async move {
                let mut conn = db.acquire().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                entities::create(&mut tx, &new).await?;
                tx.rollback().await?;
                Ok(())
            })
        });
        Ok(self.go(states, op, at_start).await)
    }

    /// COPY, UNNEST or upsert of a batch of 1 000 records.
    async fn ingest<T>(&self, at_start: impl Future<Output = T>) -> Outcome<T> {
        let kind = self.case.op;
        let mut states = connections(self.db, self.n).await?;
        // Every measurement starts from the same table: upserts leave 1 000 dead tuples
        // each (autovacuum is off on measured tables), and without this each observation
        // would pay for the ones before it, in time and in buffers.
        sqlx::query("VACUUM source_records")
            .execute(&mut *states[0])
            .await
            .map_err(DbError::from)?;
        let op: DbOp<MeteredConnection> = Arc::new(move |c| {
            let rows = batch(kind != Op::Upsert1k);
            Box::pin(async move {
                match kind {
                    Op::Copy1k => copy_records(c, rows).await.map(drop),
                    Op::Unnest1k => insert_records_unnest(c, rows).await.map(drop),
                    _ => upsert_records(c, rows).await.map(drop),
                }
            })
        });
        Ok(self.go(states, op, at_start).await)
    }

    /// Checkouts on a pool of one connection of the case's own (see [`Op::AcquireIdle`]).
    async fn acquire<T>(&self, at_start: impl Future<Output = T>) -> Outcome<T> {
        let single = PoolSettings {
            min_connections: 1,
            max_connections: 1,
            ..self.db.settings().clone()
        };
        let own = Db::connect(self.db.url(), single).await?;
        let states = vec![own.clone(); self.n];
        let with_query = self.case.op == Op::AcquireContended;
        let op: DbOp<Db> = Arc::new(move |db| {
            Box::pin(async move {
                let mut c = db.acquire().await?;
                if with_query {
                    sqlx::query("SELECT 1").execute(&mut *c).await?;
                }
                Ok(())
            })
        });
        let m = self.go(states, op, at_start).await;
        own.close().await;
        Ok(m)
    }

    /// Searches through one cache shared by the case's tasks.
    async fn search_cached<T>(&self, at_start: impl Future<Output = T>) -> Outcome<T> {
        let cache = Arc::new(SearchCache::default());
        let conns = connections(self.db, self.n).await?;
        let states: Vec<_> = conns
            .into_iter()
            .zip(rngs(self.n))
            .map(|(c, rng)| (c, rng, cache.clone()))
            .collect();
        let op: DbOp<(MeteredConnection, ChaCha8Rng, Arc<SearchCache>)> =
            Arc::new(|(c, rng, cache)| {
                let query = super::plans::noisy_name(rng.random_range(0..CACHED_QUERIES) * 977);
                let req = SearchRequest::new(query, 10);
                let cache = cache.clone();
                Box::pin(async move { cache.search(c, &req).await.map(drop) })
            });
        Ok(self.go(states, op, at_start).await)
    }

    /// The API service on this case's pool, on 127.0.0.1 for the measurement only, and one
    /// keep-alive client per task.
    async fn http_search<T>(&self, at_start: impl Future<Output = T>, cached: bool) -> Outcome<T> {
        let (addr, stop, server) = self.start_service(cached).await?;
        let base = format!("http://{addr}/search?limit=10&q=");
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| PerfError::Service {
                source: std::io::Error::other(e),
            })?;
        if cached {
            // Store the 20 popular pages now: the case measures hits.
            for i in 0..CACHED_QUERIES {
                let url = format!("{base}{}", encode(&super::plans::noisy_name(i * 977)));
                let _ = client
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status());
            }
        }
        let states: Vec<_> = rngs(self.n)
            .into_iter()
            .map(|rng| (client.clone(), base.clone(), rng))
            .collect();
        let op: Operation<(reqwest::Client, String, ChaCha8Rng), String> =
            Arc::new(move |(client, base, rng)| {
                let query = if cached {
                    super::plans::noisy_name(rng.random_range(0..CACHED_QUERIES) * 977)
                } else {
                    noisy(rng)
                };
                Box::pin(get_search(client.get(format!("{base}{}", encode(&query)))))
            });
        let out = self.go(states, op, at_start).await;
        let _ = stop.send(());
        let _ = server.await;
        Ok(out)
    }

    /// The service on this case's pool, on an ephemeral port of 127.0.0.1, until `stop`
    /// is sent. Uncached: pages live 1 ms. The service's own accept loop, not
    /// `service::serve`, which would close the pool when it stops.
    async fn start_service(
        &self,
        cached: bool,
    ) -> Result<(SocketAddr, oneshot::Sender<()>, JoinHandle<()>), PerfError> {
        let cache_ttl = if cached {
            crate::db::search_cache::DEFAULT_TTL
        } else {
            std::time::Duration::from_millis(1)
        };
        let config = crate::service::Config {
            cache_ttl,
            ..crate::service::Config::default()
        };
        let router = crate::service::router_with(self.db.clone(), config)?;
        let service_error = |source| PerfError::Service { source };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(service_error)?;
        let addr = listener.local_addr().map_err(service_error)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = crate::service::ConnectionLimits::default();
        let stopped = async {
            let _ = stopped.await;
        };
        let server = tokio::spawn(crate::service::accept_loop(
            listener, router, limits, stopped,
        ));
        Ok((addr, stop, server))
    }

    async fn acquire_new_connection<T>(&self, at_start: impl Future<Output = T>) -> Outcome<T> {
        let settings = PoolSettings {
            min_connections: 0,
            max_connections: 1,
            ..self.db.settings().clone()
        };
        let states: Vec<_> = (0..self.n)
            .map(|_| (self.db.url().clone(), settings.clone()))
            .collect();
        let op: DbOp<(crate::db::DatabaseUrl, PoolSettings)> = Arc::new(|(url, settings)| {
            Box::pin(async move {
                let fresh = Db::connect_lazy(url, settings.clone());
                let acquired = fresh.acquire().await.map(drop);
                fresh.close().await;
                acquired
            })
        });
        Ok(self.go(states, op, at_start).await)
    }
}

/// One `GET /search` of a timed HTTP case: an error unless it answered 2xx.
async fn get_search(request: reqwest::RequestBuilder) -> Result<(), String> {
    let r = request
        .send()
        .await
        .map_err(|e| format!("GET /search: {e}"))?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| format!("GET /search: {e}"))?;
    if status.is_success() {
        Ok(())
    } else {
        let body = String::from_utf8_lossy(&body);
        Err(format!("GET /search: {status}: {body}"))
    }
}

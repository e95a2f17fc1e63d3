//! The search cache (the M01 `search_cache` table), in front of [`search`].
//!
//! An entry is keyed by the search generation (see the migration
//! `20261130000001_search_cache_generation.sql`) and the request: the normalized query, the
//! filters, the limit and the cursor. A hit is one statement: it finds the entry of the current
//! generation that has not expired, counts the hit and returns the stored hits (the table's
//! `results` array; the next page's cursor follows from them and the limit). A miss runs the
//! search and reads the generation in one repeatable-read snapshot, so the page stored is
//! exactly that generation's answer, then stores it; concurrent misses of one key store the
//! same page, and `ON CONFLICT` keeps the first (it replaces an entry only once expired). Any write to entities or aliases
//! moves the generation in its own transaction, so an entry that could be stale is never read
//! again; it expires after its TTL, and [`SearchCache::purge`] deletes it, and the entries
//! closest to expiry beyond a cap. Pages reached by a cursor are never stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};

use super::DbError;
use super::search::{SearchHit, SearchPage, SearchRequest, search};

/// The longest request key stored (the table allows 512 with the generation in front).
const MAX_KEY_CHARS: usize = 480;

/// Whether a page came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Served {
    /// From a stored entry of the current generation.
    Hit,
    /// Searched now (and stored).
    Miss,
}

/// Hits and misses since the cache was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheCounts {
    /// Pages served from the cache.
    pub hits: u64,
    /// Pages searched.
    pub misses: u64,
}

/// The cache: its time to live and its counters (share one per process).
#[derive(Debug)]
pub struct SearchCache {
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The default time to live: long enough to absorb a burst of the same searches, short
/// enough that a source filter's lag (source records do not move the generation) stays small.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A plain read: counting each hit in the row (an UPDATE) made every hit of a popular key
/// wait for that row's lock and write WAL. Hits are counted in memory ([`CacheCounts`]).
const HIT: &str = const_format::concatcp!(
    "
SELECT results FROM search_cache
 WHERE query_key = (SELECT 'g' || ",
    GENERATION_NOW,
    " || ':' || $1 FROM search_generation)
   AND expires_at > now()"
);

/// The generation readers key the cache by: the stored one, or the next once a pending move's
/// `max_staleness` has passed (migration `20261202000001_search_cache_bounded_staleness.sql`).
pub(crate) const GENERATION_NOW: &str =
    "(generation + (pending AND clock_timestamp() - moved_at >= max_staleness)::int)";

/// Entries deleted per statement by [`SearchCache::purge`], so a purge never holds many locks.
const PURGE_BATCH: i64 = 1_000;

const PURGE_EXPIRED: &str = "
DELETE FROM search_cache WHERE query_key IN (
  SELECT query_key FROM search_cache WHERE expires_at <= now() LIMIT $1)";

const PURGE_OVER_CAP: &str = "
DELETE FROM search_cache WHERE query_key IN (
  SELECT query_key FROM search_cache ORDER BY expires_at
   LIMIT LEAST($1, GREATEST((SELECT count(*) FROM search_cache) - $2, 0)))";

const STORE: &str = "
INSERT INTO search_cache (query_key, results, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (query_key) DO UPDATE
   SET results = EXCLUDED.results, expires_at = EXCLUDED.expires_at, created_at = now(),
       hit_count = 0
 WHERE search_cache.expires_at <= now()";

impl Default for SearchCache {
    fn default() -> Self {
        Self::new(DEFAULT_TTL).expect("the default TTL is valid")
    }
}

impl SearchCache {
    /// A cache whose entries live `ttl` (at least a millisecond, at most a day).
    pub fn new(ttl: Duration) -> Result<Self, DbError> {
        if ttl < Duration::from_millis(1) || ttl > Duration::from_secs(86_400) {
            return Err(DbError::invalid(
                "ttl",
                format!("{ttl:?} is not between 1 ms and 1 day"),
            ));
        }
        Ok(Self {
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Hits and misses so far.
    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// A search through the cache. Bad requests are refused as [`search`] refuses them,
    /// before the cache is consulted.
    pub async fn search(
        &self,
        conn: &mut PgConnection,
        req: &SearchRequest,
    ) -> Result<(SearchPage, Served), DbError> {
        let Some(normalized) = req.normalized()? else {
            return Ok((search(conn, req).await?, Served::Miss));
        };
        if req.after.is_some() {
            // Pages reached by a cursor are not stored: every cursor would make a new key.
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok((search(conn, req).await?, Served::Miss));
        }
        let key = request_key(&normalized, req);
        if key.chars().count() > MAX_KEY_CHARS {
            // Normalization can lengthen exotic text; such a search is not worth a check
            // violation: it is answered, not stored.
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok((search(conn, req).await?, Served::Miss));
        }
        let stored: Option<sqlx::types::Json<Vec<SearchHit>>> = sqlx::query_scalar(HIT)
            .bind(&key)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(hits) = stored {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((SearchPage::of(hits.0, req.limit), Served::Hit));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let (generation, page) = search_at_a_generation(conn, req).await?;
        sqlx::query(STORE)
            .bind(format!("g{generation}:{key}"))
            .bind(sqlx::types::Json(&page.hits))
            .bind(self.ttl.as_secs_f64())
            .execute(&mut *conn)
            .await?;
        Ok((page, Served::Miss))
    }

    /// Deletes expired entries (older generations' included, once expired); returns how many.
    pub async fn purge_expired(conn: &mut PgConnection) -> Result<u64, DbError> {
        Self::purge(conn, u64::MAX).await
    }

    /// Deletes expired entries, then the entries closest to expiry while more than
    /// `max_entries` remain, in batches of [`PURGE_BATCH`]; returns how many were deleted.
    pub async fn purge(conn: &mut PgConnection, max_entries: u64) -> Result<u64, DbError> {
        let cap = i64::try_from(max_entries).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for (statement, binds_cap) in [(PURGE_EXPIRED, false), (PURGE_OVER_CAP, true)] {
            loop {
                let mut q = sqlx::query(statement).bind(PURGE_BATCH);
                if binds_cap {
                    q = q.bind(cap);
                }
                let n = q.execute(&mut *conn).await?.rows_affected();
                deleted += n;
                if n < PURGE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

/// Sets how long a cached page may be served after a write that changes it (see the
/// migration `20261202000001_search_cache_bounded_staleness.sql`): zero (the default) moves the
/// generation on every write; above zero, at most once per `max_staleness`, so continuous
/// writes do not empty the cache. At most an hour.
pub async fn set_max_staleness(
    conn: &mut PgConnection,
    max_staleness: Duration,
) -> Result<(), DbError> {
    if max_staleness > Duration::from_secs(3600) {
        return Err(DbError::invalid("max_staleness", "must be at most an hour"));
    }
    sqlx::query("UPDATE search_generation SET max_staleness = make_interval(secs => $1)")
        .bind(max_staleness.as_secs_f64())
        .execute(conn)
        .await?;
    Ok(())
}

/// The request's part of a key: everything that shapes the page, nothing else.
pub(crate) fn request_key(normalized: &str, req: &SearchRequest) -> String {
    let after = req
        .after
        .map_or(String::new(), |c| format!("{}/{}", c.score, c.id));
    format!(
        "{}|{}|{}|{}|{normalized}",
        req.kind.map_or("", |k| k.as_str()),
        req.source.as_deref().unwrap_or(""),
        req.limit,
        after
    )
}

/// The current generation and the search's page, read in one snapshot.
async fn search_at_a_generation(
    conn: &mut PgConnection,
    req: &SearchRequest,
) -> Result<(i64, SearchPage), DbError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let generation: i64 = sqlx::query_scalar(const_format::concatcp!(
        "SELECT ",
        GENERATION_NOW,
        " FROM search_generation"
    ))
    .fetch_one(&mut *tx)
    .await?;
    let page = search(&mut tx, req).await?;
    tx.commit().await?;
    Ok((generation, page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntityKind;
    use crate::search::Cursor;

    #[test]
    fn keys_differ_by_everything_that_shapes_a_page() {
        let base = SearchRequest::new("acme", 10);
        let variants = [
            SearchRequest {
                limit: 11,
                ..base.clone()
            },
            SearchRequest {
                kind: Some(EntityKind::Person),
                ..base.clone()
            },
            SearchRequest {
                source: Some("crm".into()),
                ..base.clone()
            },
            SearchRequest {
                after: Some(Cursor { score: 0.5, id: 7 }),
                ..base.clone()
            },
        ];
        let key = |r: &SearchRequest| request_key("acme", r);
        let mut keys: Vec<String> = variants.iter().map(key).collect();
        keys.push(key(&base));
        keys.push(request_key("acme widgets", &base));
        let unique: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
        assert!(keys.iter().all(|k| k.chars().count() <= 300));
    }

    #[test]
    fn a_ttl_outside_a_millisecond_to_a_day_is_refused() {
        assert!(SearchCache::new(Duration::ZERO).is_err());
        assert!(SearchCache::new(Duration::from_secs(86_401)).is_err());
        assert!(SearchCache::new(Duration::from_secs(60)).is_ok());
    }
}

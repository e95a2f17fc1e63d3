//! A process-local tier in front of the search cache table ([`crate::search_cache`]): pages
//! kept in memory (moka, bounded by their size in bytes and by time to live), keyed by the search
//! generation as last polled and by the request. A hit costs no database round trip.
//!
//! Its price is staleness. A write shows in this tier once the generation is polled again, so
//! a page is served at most `max_age` (how old a poll may be before the tier stops serving)
//! after the database's own readers stopped serving it. Use it where a page may be that late:
//! with the table's bounded staleness ([`crate::search_cache::set_max_staleness`]), a page is
//! served at most `max_staleness + max_age` after a write that changes it. When polls fail
//! (the database is unreachable), the tier stops serving once the last poll is `max_age` old.
//!
//! A page is stored under the generation polled *before* it was searched: the database's
//! generation only moves forward, so the page is of that generation or a newer one, never
//! older. Pages reached by a cursor are not stored, as in the table.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use sqlx::PgConnection;

use super::DbError;
use super::search::{SearchPage, SearchRequest};
use super::search_cache::{GENERATION_NOW, request_key};

/// The in-memory tier (share one per process).
pub struct ProcessTier {
    pages: Cache<(i64, String), SearchPage>,
    /// The generation last polled, and when that poll was sent.
    polled: Mutex<Option<(i64, Instant)>>,
    max_age: Duration,
    hits: AtomicU64,
}

/// Where a page the tier did not have goes once searched: the key it would have had, under
/// the generation polled before the search (`None`: the page is not to be stored).
#[derive(Debug)]
pub struct Slot(Option<(i64, String)>);

const POLL: &str = const_format::concatcp!("SELECT ", GENERATION_NOW, " FROM search_generation");

impl ProcessTier {
    /// A tier of at most `max_bytes` of pages (keys and texts, as [`weight`] counts them),
    /// each kept at most `ttl`, serving only while its last poll is younger than `max_age`.
    pub fn new(max_bytes: u64, ttl: Duration, max_age: Duration) -> Self {
        Self {
            pages: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(weight)
                .time_to_live(ttl)
                .build(),
            polled: Mutex::new(None),
            max_age,
            hits: AtomicU64::new(0),
        }
    }

    /// Reads the generation readers see now, and keys the tier by it.
    pub async fn poll(&self, conn: &mut PgConnection) -> Result<i64, DbError> {
        let sent = Instant::now();
        let generation: i64 = sqlx::query_scalar(POLL).fetch_one(conn).await?;
        self.polled_at(generation, sent);
        Ok(generation)
    }

    fn polled_at(&self, generation: i64, sent: Instant) {
        let mut polled = self.polled.lock().unwrap_or_else(|e| e.into_inner());
        // A poll answered late must not put back an older generation.
        if polled.is_none_or(|(g, at)| generation >= g && sent >= at) {
            *polled = Some((generation, sent));
        }
    }

    /// The generation to key by, while the last poll is younger than `max_age`.
    fn generation(&self) -> Option<i64> {
        let polled = *self.polled.lock().unwrap_or_else(|e| e.into_inner());
        polled
            .filter(|(_, at)| at.elapsed() < self.max_age)
            .map(|(g, _)| g)
    }

    /// The page of `req` if this tier has it for the polled generation; otherwise the slot
    /// the page goes to once searched ([`ProcessTier::put`]).
    pub fn get(&self, req: &SearchRequest) -> Result<SearchPage, Slot> {
        let key = self.generation().zip(stored_key(req));
        if let Some(page) = key.as_ref().and_then(|k| self.pages.get(k)) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(page);
        }
        Err(Slot(key))
    }

    /// Keeps `page`, searched after [`ProcessTier::get`] gave `slot`.
    pub fn put(&self, slot: Slot, page: &SearchPage) {
        if let Slot(Some(key)) = slot {
            self.pages.insert(key, page.clone());
        }
    }

    /// Pages served from memory so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Pages held and their weight in bytes (after pending evictions have run).
    pub fn size(&self) -> (u64, u64) {
        self.pages.run_pending_tasks();
        (self.pages.entry_count(), self.pages.weighted_size())
    }
}

/// What a page costs in memory, roughly: its key, its texts and a fixed part per hit and per
/// entry. A page of 100 hits with 500-character names weighs about 100 kB, so a byte budget,
/// not a count of pages, bounds the tier under hostile queries.
fn weight(key: &(i64, String), page: &SearchPage) -> u32 {
    let hits: usize = page
        .hits
        .iter()
        .map(|h| 64 + h.kind.len() + h.name.len() + h.matched.len())
        .sum();
    u32::try_from(128 + key.1.len() + hits).unwrap_or(u32::MAX)
}

/// The request's key, or `None` for a page the tier does not keep: a page reached by a
/// cursor, or a query that does not normalize.
fn stored_key(req: &SearchRequest) -> Option<String> {
    if req.after.is_some() {
        return None;
    }
    let normalized = req.normalized().ok().flatten()?;
    Some(request_key(&normalized, req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{Cursor, SearchHit};

    fn page(name: &str) -> SearchPage {
        SearchPage {
            hits: vec![SearchHit {
                id: 1,
                kind: "organization".into(),
                name: name.into(),
                matched: name.into(),
                score: 1.0,
            }],
            next: None,
        }
    }

    fn tier() -> ProcessTier {
        ProcessTier::new(100_000, Duration::from_secs(60), Duration::from_secs(1))
    }

    #[test]
    fn a_page_is_served_for_the_generation_it_was_searched_at_only() {
        let t = tier();
        let req = SearchRequest::new("acme", 10);
        t.polled_at(5, Instant::now());
        let slot = t.get(&req).unwrap_err();
        t.put(slot, &page("Acme"));
        assert_eq!(t.get(&req).unwrap(), page("Acme"));
        t.polled_at(6, Instant::now());
        assert!(t.get(&req).is_err(), "a moved generation misses");
        assert_eq!(t.hits(), 1);
    }

    #[test]
    fn a_page_searched_before_a_move_is_not_served_after_it() {
        let t = tier();
        let req = SearchRequest::new("acme", 10);
        t.polled_at(5, Instant::now());
        let slot = t.get(&req).unwrap_err();
        t.polled_at(6, Instant::now());
        t.put(slot, &page("Acme (generation 5)"));
        assert!(t.get(&req).is_err());
    }

    #[test]
    fn nothing_is_served_without_a_recent_poll() {
        let t = tier();
        let req = SearchRequest::new("acme", 10);
        assert!(t.get(&req).unwrap_err().0.is_none(), "never polled");
        t.polled_at(5, Instant::now() - Duration::from_secs(2));
        assert!(t.get(&req).unwrap_err().0.is_none(), "the poll is too old");
    }

    #[test]
    fn a_late_poll_answer_does_not_move_the_generation_back() {
        let t = tier();
        let now = Instant::now();
        t.polled_at(6, now);
        t.polled_at(5, now - Duration::from_millis(10));
        assert_eq!(t.generation(), Some(6));
    }

    #[test]
    fn pages_by_cursor_are_not_kept_and_the_tier_stays_under_its_byte_budget() {
        let t = tier();
        t.polled_at(1, Instant::now());
        let mut by_cursor = SearchRequest::new("acme", 10);
        by_cursor.after = Some(Cursor { score: 0.5, id: 3 });
        assert!(t.get(&by_cursor).unwrap_err().0.is_none());
        let long = "n".repeat(500);
        for i in 0..1_000 {
            let req = SearchRequest::new(format!("name {i}"), 10);
            let slot = t.get(&req).unwrap_err();
            t.put(slot, &page(&long));
        }
        let (entries, bytes) = t.size();
        assert!(bytes <= 100_000, "{entries} pages, {bytes} bytes");
        assert!(
            entries >= 50,
            "the budget holds about 80 such pages: {entries}"
        );
    }
}

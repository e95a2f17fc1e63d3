//! Search over a small hand-built set of entities, with exact expected hits and scores, and
//! the search cache in front of it.
//!
//! Trigram similarity of the query "acme" (trigrams `  a`, ` ac`, `acm`, `cme`, `me `) to each
//! normalized name: "acme" 5/5 = 1; "john acme" 5/10 = 0.5; "acme widgets" 5/13; alias
//! "acme holdings" 5/14; "acne studios" 2/16 (under pg_trgm's 0.3: not a candidate). Score =
//! 0.85 * similarity + 0.15 when the name holds every query word.

use pgperf::db::repo::{aliases, entities, records};
use pgperf::db::search::{SearchPage, SearchRequest, search};
use pgperf::db::search_cache::{CacheCounts, SearchCache, Served, set_max_staleness};
use pgperf::db::{DbError, EntityKind, MeteredConnection, NewSourceRecord};
use serde_json::json;

use crate::support::{TestDb, entity};

/// The entities' ids, by name.
struct Ids {
    acme_corp: i64,
    acme_widgets: i64,
    globex: i64,
    john_acme: i64,
    acme_inc: i64,
}

async fn seed(c: &mut MeteredConnection) -> Ids {
    let org = EntityKind::Organization;
    let acme_corp = entity(c, org, "Acme Corporation").await;
    let acme_widgets = entity(c, org, "Acme Widgets Ltd").await;
    entity(c, org, "Acne Studios").await;
    let globex = entity(c, org, "Globex").await;
    aliases::add(c, globex, "Acme Holdings").await.unwrap();
    let john_acme = entity(c, EntityKind::Person, "John Acme").await;
    entity(c, org, "Initech").await;
    let acme_inc = entity(c, org, "ACME Inc.").await;
    Ids {
        acme_corp,
        acme_widgets,
        globex,
        john_acme,
        acme_inc,
    }
}

fn summary(page: &SearchPage) -> Vec<(i64, &str, f64)> {
    page.hits
        .iter()
        .map(|h| (h.id, h.matched.as_str(), h.score))
        .collect()
}

#[tokio::test]
async fn hits_are_ranked_by_score_then_id_with_exact_scores() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let ids = seed(&mut c).await;

    let page = search(&mut c, &SearchRequest::new("  ACME!! ", 10))
        .await
        .unwrap();

    assert_eq!(
        summary(&page),
        vec![
            (ids.acme_corp, "Acme Corporation", 1.0),
            (ids.acme_inc, "ACME Inc.", 1.0),
            (ids.john_acme, "John Acme", 0.575),
            (ids.acme_widgets, "Acme Widgets Ltd", 0.476923),
            (ids.globex, "Acme Holdings", 0.303571),
        ]
    );
    assert_eq!(page.next, None, "a page that is not full is the last");
    assert_eq!(page.hits[4].name, "Globex", "found through its alias");
}

#[tokio::test]
async fn filters_by_kind_and_by_source() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let ids = seed(&mut c).await;
    let record = NewSourceRecord {
        source: "crm".into(),
        external_id: "c-1".into(),
        payload: json!({}),
        entity_id: Some(ids.acme_widgets),
        match_score: Some(0.9),
    };
    records::create(&mut c, &record).await.unwrap();

    let people = SearchRequest {
        kind: Some(EntityKind::Person),
        ..SearchRequest::new("acme", 10)
    };
    let from_crm = SearchRequest {
        source: Some("crm".into()),
        ..SearchRequest::new("acme", 10)
    };
    let people = search(&mut c, &people).await.unwrap();
    let from_crm = search(&mut c, &from_crm).await.unwrap();

    assert_eq!(summary(&people), vec![(ids.john_acme, "John Acme", 0.575)]);
    assert_eq!(
        summary(&from_crm),
        vec![(ids.acme_widgets, "Acme Widgets Ltd", 0.476923)]
    );
}

#[tokio::test]
async fn a_query_words_cannot_find_falls_back_to_trigrams_within_its_filters() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let ids = seed(&mut c).await;
    // No word of it is in a name, and its longest word is two edits from "widgets".
    let typed = SearchRequest::new("Acmme Widggetts", 10);

    let page = search(&mut c, &typed).await.unwrap();
    // 0.85 * similarity 0.5263158 to "acme widgets" (trigrams only: no word bonus).
    assert_eq!(
        summary(&page),
        vec![(ids.acme_widgets, "Acme Widgets Ltd", 0.447368)]
    );

    // An organization that words find, and a person only trigrams find.
    let org = EntityKind::Organization;
    let by_words = entity(&mut c, org, "Acmme Widggetts Trading").await;
    let person = entity(&mut c, EntityKind::Person, "Acme Widgets").await;
    let page = search(&mut c, &typed).await.unwrap();
    // Words found an entity (0.85 * 0.6666667 + 0.15), so the trigram tier did not run:
    // "Acme Widgets Ltd" and the person are left out (the tiers' trade, see the module
    // documentation).
    assert_eq!(
        summary(&page),
        vec![(by_words, "Acmme Widggetts Trading", 0.716667)]
    );
    let people = SearchRequest {
        kind: Some(EntityKind::Person),
        ..typed.clone()
    };
    let page = search(&mut c, &people).await.unwrap();
    // The filter drops the organization words found, so the trigram tier runs for people.
    assert_eq!(summary(&page), vec![(person, "Acme Widgets", 0.447368)]);
}

#[tokio::test]
async fn pages_follow_each_other_without_gaps_or_repeats_even_across_ties() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    seed(&mut c).await;
    let all = search(&mut c, &SearchRequest::new("acme", 100))
        .await
        .unwrap();

    for limit in [1, 2, 3] {
        let mut walked = Vec::new();
        let mut req = SearchRequest::new("acme", limit);
        for _ in 0..10 {
            let page = search(&mut c, &req).await.unwrap();
            walked.extend(page.hits);
            match page.next {
                Some(cursor) => req.after = Some(cursor),
                None => break,
            }
        }
        assert_eq!(walked, all.hits, "pages of {limit}");
    }
}

#[tokio::test]
async fn wildcards_are_ordinary_characters_and_bad_queries_never_reach_the_server() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    seed(&mut c).await;

    // As LIKE patterns, '%cme' and 'a_me' would match "Acme"; here they are text.
    for text in ["%cme", "_cme"] {
        let page = search(&mut c, &SearchRequest::new(text, 10)).await.unwrap();
        assert_eq!(summary(&page), vec![], "{text:?}");
    }
    for nothing in ["", "?!", "%%%", "___"] {
        let page = search(&mut c, &SearchRequest::new(nothing, 10))
            .await
            .unwrap();
        assert_eq!(page.hits, vec![], "{nothing:?}");
    }
    let long = "acme ".repeat(2_000);
    for req in [
        SearchRequest::new(long, 10),
        SearchRequest::new("acme", 0),
        SearchRequest::new("acme", 1_000_000),
        SearchRequest::new("a", 10),
    ] {
        let started = std::time::Instant::now();
        let err = search(&mut c, &req).await.unwrap_err();
        assert!(matches!(err, DbError::InvalidInput { .. }), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
    }
}

/// Renames entity `id` at its current version.
async fn rename(c: &mut sqlx::PgConnection, id: i64, name: &str) {
    let current = entities::get(c, id).await.unwrap();
    let changes = pgperf::db::EntityChanges {
        name: Some(name.into()),
        attributes: None,
    };
    entities::update(c, id, current.version, &changes)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_renamed_entity_is_found_by_its_new_name_only() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let ids = seed(&mut c).await;
    rename(&mut c, ids.acme_widgets, "Zenith Gadgets").await;

    let acme = search(&mut c, &SearchRequest::new("acme widgets", 10))
        .await
        .unwrap();
    let zenith = search(&mut c, &SearchRequest::new("zenith gadgets", 10))
        .await
        .unwrap();

    assert!(
        acme.hits.iter().all(|h| h.id != ids.acme_widgets),
        "{acme:?}"
    );
    assert_eq!(
        summary(&zenith),
        vec![(ids.acme_widgets, "Zenith Gadgets", 1.0)]
    );
}

async fn stored_entries(c: &mut MeteredConnection) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT query_key, hit_count FROM search_cache ORDER BY query_key")
        .fetch_all(&mut **c)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_cache_serves_a_repeated_search_and_counts_hits_and_misses() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    seed(&mut c).await;
    let cache = SearchCache::default();
    let req = SearchRequest::new("acme", 3);

    let (first, served_first) = cache.search(&mut c, &req).await.unwrap();
    let (second, served_second) = cache.search(&mut c, &req).await.unwrap();
    let (third, _) = cache.search(&mut c, &req).await.unwrap();

    assert_eq!((served_first, served_second), (Served::Miss, Served::Hit));
    assert_eq!(first, search(&mut c, &req).await.unwrap());
    assert_eq!(
        (&second, &third),
        (&first, &first),
        "the stored page, cursor included"
    );
    assert!(second.next.is_some());
    assert_eq!(cache.counts(), CacheCounts { hits: 2, misses: 1 });
    let entries = stored_entries(&mut c).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0].1, 0,
        "hits are counted in memory, not by a write per hit"
    );
}

#[tokio::test]
async fn a_cache_entry_expires_after_its_ttl() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    seed(&mut c).await;
    let cache = SearchCache::new(std::time::Duration::from_millis(300)).unwrap();
    let req = SearchRequest::new("acme", 10);

    let (_, first) = cache.search(&mut c, &req).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (_, after_ttl) = cache.search(&mut c, &req).await.unwrap();
    let (_, refreshed) = cache.search(&mut c, &req).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let purged = SearchCache::purge_expired(&mut c).await.unwrap();

    assert_eq!(
        (first, after_ttl, refreshed),
        (Served::Miss, Served::Miss, Served::Hit),
        "an expired entry is searched again and replaced"
    );
    assert_eq!(purged, 1);
    assert_eq!(stored_entries(&mut c).await, vec![]);
}

#[tokio::test]
async fn a_write_to_entities_or_aliases_means_no_stale_page_is_served() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let ids = seed(&mut c).await;
    let cache = SearchCache::default();
    let req = SearchRequest::new("acme widgets", 10);
    let (before, _) = cache.search(&mut c, &req).await.unwrap();
    assert_eq!(before.hits[0].id, ids.acme_widgets);

    rename(&mut c, ids.acme_widgets, "Zenith Gadgets").await;
    let (after_rename, served) = cache.search(&mut c, &req).await.unwrap();
    assert_eq!(served, Served::Miss);
    assert!(
        after_rename.hits.iter().all(|h| h.id != ids.acme_widgets),
        "{after_rename:?}"
    );

    let (_, cached) = cache.search(&mut c, &req).await.unwrap();
    aliases::add(&mut c, ids.globex, "Acme Widgets International")
        .await
        .unwrap();
    let (after_alias, served) = cache.search(&mut c, &req).await.unwrap();
    assert_eq!((cached, served), (Served::Hit, Served::Miss));
    assert!(
        after_alias
            .hits
            .iter()
            .any(|h| h.id == ids.globex && h.matched.contains("International"))
    );
}

/// Whether `id` is among the page's hits, and how the page was served.
async fn finds(
    c: &mut sqlx::PgConnection,
    cache: &SearchCache,
    req: &SearchRequest,
    id: i64,
) -> (bool, Served) {
    let (page, served) = cache.search(c, req).await.unwrap();
    (page.hits.iter().any(|h| h.id == id), served)
}

/// With a staleness bound, a write after a quiet spell shows at once; a write soon after
/// another may be served stale, but not past the bound; the move then holds for the next one.
#[tokio::test]
async fn with_a_staleness_bound_writes_show_within_it_and_the_cache_survives_them() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let ids = seed(&mut c).await;
    let bound = std::time::Duration::from_millis(1_500);
    let past_the_bound = bound + std::time::Duration::from_millis(200);
    tokio::time::sleep(past_the_bound).await;
    set_max_staleness(&mut c, bound).await.unwrap();
    let cache = SearchCache::default();
    let req = SearchRequest::new("acme widgets", 10);
    assert_eq!(
        finds(&mut c, &cache, &req, ids.acme_widgets).await,
        (true, Served::Miss)
    );

    // Quiet for longer than the bound: the write moves the generation at once.
    rename(&mut c, ids.acme_widgets, "Zenith Gadgets").await;
    let moved = std::time::Instant::now();
    assert_eq!(
        finds(&mut c, &cache, &req, ids.acme_widgets).await,
        (false, Served::Miss)
    );
    assert_eq!(
        finds(&mut c, &cache, &req, ids.acme_widgets).await,
        (false, Served::Hit)
    );

    // A write within the bound of that move: the stored page is still served...
    rename(&mut c, ids.acme_widgets, "Acme Widgets Ltd").await;
    assert!(
        moved.elapsed() < bound,
        "the machine was too slow for this test"
    );
    assert_eq!(
        finds(&mut c, &cache, &req, ids.acme_widgets).await,
        (false, Served::Hit)
    );
    // ...until the bound has passed since the move, then the write shows.
    tokio::time::sleep_until((moved + past_the_bound).into()).await;
    assert_eq!(
        finds(&mut c, &cache, &req, ids.acme_widgets).await,
        (true, Served::Miss)
    );
    assert_eq!(
        finds(&mut c, &cache, &req, ids.acme_widgets).await,
        (true, Served::Hit)
    );

    // The next write makes that move real and waits its turn: the page stays cached.
    aliases::add(&mut c, ids.globex, "Acme Widgets International")
        .await
        .unwrap();
    let (page, served) = cache.search(&mut c, &req).await.unwrap();
    assert_eq!(served, Served::Hit);
    assert!(
        page.hits
            .iter()
            .all(|h| !h.matched.contains("International"))
    );

    set_max_staleness(&mut c, std::time::Duration::from_secs(3_601))
        .await
        .expect_err("more than an hour is refused");
}

#[tokio::test]
async fn concurrent_misses_of_one_key_store_one_correct_entry() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    seed(&mut c).await;
    drop(c);
    let cache = std::sync::Arc::new(SearchCache::default());
    let req = SearchRequest::new("acme", 10);

    let pages = futures::future::join_all((0..4).map(|_| {
        let (db, cache, req) = (t.db.clone(), cache.clone(), req.clone());
        async move {
            let mut c = db.acquire().await.unwrap();
            cache.search(&mut c, &req).await.unwrap().0
        }
    }))
    .await;

    let mut c = t.db.acquire().await.unwrap();
    let expected = search(&mut c, &req).await.unwrap();
    assert!(pages.iter().all(|p| p == &expected), "{pages:#?}");
    assert_eq!(stored_entries(&mut c).await.len(), 1);
    let (hit, served) = cache.search(&mut c, &req).await.unwrap();
    assert_eq!((hit, served), (expected, Served::Hit));
}

#[tokio::test]
async fn a_purge_keeps_the_cache_under_its_cap_and_pages_by_cursor_are_not_stored() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    seed(&mut c).await;
    let cache = SearchCache::default();
    for i in 0..25 {
        let req = SearchRequest::new(format!("acme {i}"), 3);
        cache.search(&mut c, &req).await.unwrap();
    }
    let first = cache
        .search(&mut c, &SearchRequest::new("acme", 1))
        .await
        .unwrap()
        .0;
    let by_cursor = SearchRequest {
        after: first.next,
        ..SearchRequest::new("acme", 1)
    };
    let (_, served) = cache.search(&mut c, &by_cursor).await.unwrap();
    let (_, again) = cache.search(&mut c, &by_cursor).await.unwrap();

    let deleted = SearchCache::purge(&mut c, 10).await.unwrap();

    assert_eq!(
        (served, again),
        (Served::Miss, Served::Miss),
        "a cursor page is not stored"
    );
    assert_eq!(deleted, 16, "26 entries stored, 10 kept");
    assert_eq!(stored_entries(&mut c).await.len(), 10);
}

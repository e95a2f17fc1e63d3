//! Entity resolution over a small hand-built set, with exact candidates, scores and decisions.
//!
//! Candidates are found by trigram similarity of normalized names (at least 0.45, the pool's
//! `similarity_threshold`: "acme widget" and "acme" share 5 of 12 distinct trigrams, 0.416667,
//! and "acme" and "acme widgets" 5 of 13, 0.384615, so neither is a candidate of the other
//! until the threshold is 0.3) and scored word by word, each word weighted by its length
//! (`name_score`): "acme widget" and "acme widgets" (4 + 6 * 6/7 + 4 + 7 * 6/7) / 21 =
//! 0.911565; "jon smith" and "john smith" (3 * 3/4 + 5 + 4 * 3/4 + 5) / 17 = 0.897059;
//! "smith" and "john smith" (5 + 0 + 5) / 14 = 0.714286 ("john" and "smith" share no
//! letter in place); "acme widget" and "acme" (4 + 6 * 1/6 + 4) / 14 = 0.642857 ("widget"
//! is five edits from "acme"); "acme" and "acme widgets" (4 + 4 + 7 * 1/7) / 15 = 0.6.

use pgperf::db::repo::{aliases, records};
use pgperf::db::resolve::{
    Decision, MAX_BATCH, NameToResolve, Resolution, Thresholds, link_if_matched, resolve,
    resolve_batch, resolve_batch_on,
};
use pgperf::db::{DbError, EntityKind, MeteredConnection, NewSourceRecord};
use serde_json::json;

use crate::support::{TestDb, entity};

struct Ids {
    acme_corp: i64,
    acme_widgets: i64,
    globex: i64,
    john_smith: i64,
}

async fn seed(c: &mut MeteredConnection) -> Ids {
    let org = EntityKind::Organization;
    let acme_corp = entity(c, org, "Acme Corporation").await;
    let acme_widgets = entity(c, org, "Acme Widgets Ltd").await;
    let globex = entity(c, org, "Globex").await;
    aliases::add(c, globex, "Global Exports").await.unwrap();
    let john_smith = entity(c, EntityKind::Person, "John Smith").await;
    Ids {
        acme_corp,
        acme_widgets,
        globex,
        john_smith,
    }
}

fn name(name: &str, kind: EntityKind) -> NameToResolve {
    NameToResolve {
        name: name.to_owned(),
        kind,
    }
}

fn names() -> Vec<NameToResolve> {
    let (org, person) = (EntityKind::Organization, EntityKind::Person);
    vec![
        name("ACME Corp.", org),
        name("Acme Widget", org),
        name("Global Exports", org),
        name("John Smith", org),
        name("Jon Smith", person),
        name("?!", org),
        name("Smith", person),
    ]
}

fn summary(r: &Resolution) -> (Decision, Vec<(i64, &str, f64)>) {
    let c = r
        .candidates
        .iter()
        .map(|c| (c.id, c.matched.as_str(), c.score))
        .collect();
    (r.decision, c)
}

#[tokio::test]
async fn names_resolve_to_ranked_candidates_and_a_decision() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let ids = seed(&mut c).await;
    let resolve_all = async |c: &mut MeteredConnection| {
        let mut got = Vec::new();
        for n in names() {
            got.push(resolve(c, &n, Thresholds::default()).await.unwrap());
        }
        got
    };

    // The pool's similarity threshold (0.45) is the candidate floor; scores are word by word.
    let got = resolve_all(&mut c).await;
    let (acme, acme_widgets) = (
        (ids.acme_corp, "Acme Corporation", 1.0),
        (ids.acme_widgets, "Acme Widgets Ltd", 0.911565),
    );
    let unchanged = [
        (Decision::Match, vec![(ids.globex, "Global Exports", 1.0)]),
        (Decision::New, vec![]),
        (
            Decision::Match,
            vec![(ids.john_smith, "John Smith", 0.897059)],
        ),
        (Decision::New, vec![]),
        (
            Decision::Review,
            vec![(ids.john_smith, "John Smith", 0.714286)],
        ),
    ];
    let mut expected = vec![
        (Decision::Match, vec![acme]),
        (Decision::Match, vec![acme_widgets]),
    ];
    expected.extend(unchanged.clone());
    assert_eq!(got.iter().map(summary).collect::<Vec<_>>(), expected);

    // pg_trgm's own 0.3 lets the weaker candidates in, ranked after the best.
    sqlx::query("SET pg_trgm.similarity_threshold = 0.3")
        .execute(&mut *c)
        .await
        .unwrap();
    let got = resolve_all(&mut c).await;
    let mut expected = vec![
        (
            Decision::Match,
            vec![acme, (ids.acme_widgets, "Acme Widgets Ltd", 0.6)],
        ),
        (
            Decision::Match,
            vec![acme_widgets, (ids.acme_corp, "Acme Corporation", 0.642857)],
        ),
    ];
    expected.extend(unchanged);
    assert_eq!(got.iter().map(summary).collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn a_batch_gives_exactly_the_answers_of_one_by_one_calls_in_order_split_or_not() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    seed(&mut c).await;
    let strict = Thresholds {
        matched: 0.95,
        review: 0.7,
    };
    let mut one_by_one = Vec::new();
    for n in names() {
        one_by_one.push(resolve(&mut c, &n, strict).await.unwrap());
    }
    let batch: Vec<NameToResolve> = names().into_iter().cycle().take(MAX_BATCH).collect();

    let answers = resolve_batch(&mut c, &batch, strict).await.unwrap();
    let mut three = [
        t.db.acquire().await.unwrap(),
        t.db.acquire().await.unwrap(),
        t.db.acquire().await.unwrap(),
    ];
    let split = resolve_batch_on(&mut three, &batch, strict).await.unwrap();

    assert_eq!(answers.len(), MAX_BATCH);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer, &one_by_one[i % one_by_one.len()], "name {i}");
    }
    assert!(
        split == answers,
        "split over three connections, the answers differ"
    );
    assert_eq!(
        one_by_one[1].decision,
        Decision::Review,
        "0.911565 under 0.95"
    );
    assert_eq!(
        one_by_one[6].decision,
        Decision::Review,
        "0.714286 over 0.7"
    );
}

#[tokio::test]
async fn a_batch_over_the_limit_and_nonsense_thresholds_are_refused() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let too_many: Vec<_> = (0..=MAX_BATCH)
        .map(|i| name(&format!("n{i}"), EntityKind::Person))
        .collect();
    let err = resolve_batch(&mut c, &too_many, Thresholds::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("1001 names in one batch; at most 1000"),
        "{err}"
    );
    let inverted = Thresholds {
        matched: 0.5,
        review: 0.7,
    };
    let err = resolve(&mut c, &name("Acme", EntityKind::Organization), inverted)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::InvalidInput { ref field, .. } if field == "review"),
        "{err:?}"
    );
    let empty = resolve_batch(&mut c, &[], Thresholds::default())
        .await
        .unwrap();
    assert_eq!(empty, vec![]);
    let mut two = [t.db.acquire().await.unwrap(), t.db.acquire().await.unwrap()];
    let err = resolve_batch_on(&mut two, &too_many, Thresholds::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 1000"), "split: {err}");
    let none: &mut [MeteredConnection] = &mut [];
    let err = resolve_batch_on(none, &too_many[..1], Thresholds::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::InvalidInput { ref field, .. } if field == "connections"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_matched_record_is_linked_and_a_reviewed_one_is_not() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let ids = seed(&mut c).await;
    let record = |id: &str| NewSourceRecord {
        source: "crm".into(),
        external_id: id.into(),
        payload: json!({}),
        entity_id: None,
        match_score: None,
    };
    let matched = records::create(&mut c, &record("m")).await.unwrap();
    let reviewed = records::create(&mut c, &record("r")).await.unwrap();
    let person = EntityKind::Person;
    let org = EntityKind::Organization;
    let to_match = resolve(&mut c, &name("Acme Widget", org), Thresholds::default())
        .await
        .unwrap();
    let to_review = resolve(&mut c, &name("Smith", person), Thresholds::default())
        .await
        .unwrap();

    let linked = link_if_matched(&mut c, matched.id, &to_match)
        .await
        .unwrap();
    let not_linked = link_if_matched(&mut c, reviewed.id, &to_review)
        .await
        .unwrap();

    let linked = linked.expect("a match links");
    assert_eq!(
        (linked.entity_id, linked.match_score),
        (Some(ids.acme_widgets), Some(0.911565))
    );
    assert_eq!(not_linked, None);
    let untouched = records::get(&mut c, reviewed.id).await.unwrap();
    assert_eq!((untouched.entity_id, untouched.match_score), (None, None));
}

/// Rows the word pass's bitmap heap scan on `entities` returned for one name: how many names
/// it read and scored.
async fn names_read_by_words(c: &mut MeteredConnection, norm: &str) -> u64 {
    let explain = format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) {}",
        pgperf::db::resolve::RESOLVE_BY_WORDS
    );
    let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
        .bind(vec![norm.to_owned()])
        .bind(vec!["organization"])
        .bind(10_i64)
        .fetch_one(&mut **c)
        .await
        .unwrap();
    fn rows(node: &serde_json::Value) -> u64 {
        let scan = node["Node Type"] == "Bitmap Heap Scan" && node["Relation Name"] == "entities";
        let own = if scan {
            node["Actual Rows"].as_u64().unwrap()
        } else {
            0
        };
        let children = node["Plans"]
            .as_array()
            .map_or(0, |p| p.iter().map(rows).sum());
        own + children
    }
    rows(&plan[0]["Plan"])
}

/// A word most names share ("street" in addresses) is left out of a name's words once
/// `analyze_entities` has found it frequent: the word pass then reads the one name with the
/// name's other word instead of every name with "street", and the answer is the same. A
/// name made of frequent words only still gets its candidates.
#[tokio::test]
async fn a_word_most_names_share_is_left_out_of_the_word_pass_once_analyzed() {
    use pgperf::db::ingest::{analyze_entities, copy_entities};
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    // 400 names "<a unique word> street": the unique words are base-26 numbers in letters.
    let unique = |i: u32| -> String {
        (0..4)
            .map(|d| char::from(b'a' + ((i / 26_u32.pow(d)) % 26) as u8))
            .collect()
    };
    let rows = (0..400).map(|i| {
        let new = pgperf::db::NewEntity {
            kind: EntityKind::Organization,
            name: format!("{} street", unique(i)),
            attributes: json!({}),
        };
        (new, Vec::new())
    });
    let load = copy_entities(&mut c, rows).await.unwrap();
    let wanted = load.first_id.unwrap() + 123;
    let query = format!("{} street", unique(123));
    let resolve_it = async |c: &mut MeteredConnection| {
        let n = name(&query, EntityKind::Organization);
        let r = resolve(c, &n, Thresholds::default()).await.unwrap();
        (r.decision, r.candidates[0].id)
    };
    assert_eq!(
        names_read_by_words(&mut c, &query).await,
        400,
        "before ANALYZE"
    );
    let before = resolve_it(&mut c).await;

    let frequent = analyze_entities(&mut c).await.unwrap();

    let words: Vec<String> = sqlx::query_scalar("SELECT word FROM frequent_words")
        .fetch_all(&mut *c)
        .await
        .unwrap();
    assert_eq!(words, ["street"], "{frequent} frequent words and variants");
    assert_eq!(names_read_by_words(&mut c, &query).await, 1);
    assert_eq!(resolve_it(&mut c).await, (Decision::Match, wanted));
    assert_eq!(before, (Decision::Match, wanted));
    let only_frequent = resolve(
        &mut c,
        &name("Street", EntityKind::Organization),
        Thresholds::default(),
    )
    .await
    .unwrap();
    assert!(
        !only_frequent.candidates.is_empty(),
        "a name of frequent words only keeps them"
    );
}

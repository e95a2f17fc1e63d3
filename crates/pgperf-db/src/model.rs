//! The data layer's types. Inputs (`New*`) are validated at the edge by `validate`, so the
//! repositories send only values the schema accepts, and a rejection names the field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DbError;

/// What an entity is. Stored as text, checked by `entities_kind_check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A natural person.
    Person,
    /// A company, institution or other organization.
    Organization,
    /// A geographic place.
    Place,
    /// A product.
    Product,
}

impl EntityKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Person, Self::Organization, Self::Place, Self::Product];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Organization => "organization",
            Self::Place => "place",
            Self::Product => "product",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Result<Self, DbError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                DbError::invalid(
                    "kind",
                    format!("{s:?} is not one of person, organization, place, product"),
                )
            })
    }
}

/// A canonical entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    /// Primary key.
    pub id: i64,
    /// What it is.
    pub kind: EntityKind,
    /// The name as given.
    pub name: String,
    /// The name as [`super::normalize_name`] makes it.
    pub normalized_name: String,
    /// Free-form attributes (a JSON object).
    pub attributes: Value,
    /// Optimistic-lock version, 1 on creation, +1 per update.
    pub version: i32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

/// Input for a new entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEntity {
    /// What it is.
    pub kind: EntityKind,
    /// Its name (1-500 characters, not only spaces).
    pub name: String,
    /// Attributes; must be a JSON object.
    pub attributes: Value,
}

/// Changes to an entity; `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityChanges {
    /// A new name.
    pub name: Option<String>,
    /// New attributes (replacing the old).
    pub attributes: Option<Value>,
}

/// An alternative name of an entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alias {
    /// Primary key.
    pub id: i64,
    /// The entity it names.
    pub entity_id: i64,
    /// The alias as given.
    pub alias: String,
    /// The alias normalized.
    pub normalized_alias: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A record as received from an external source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRecord {
    /// Primary key.
    pub id: i64,
    /// The source's name.
    pub source: String,
    /// The record's id in its source (unique per source).
    pub external_id: String,
    /// The raw record.
    pub payload: Value,
    /// The entity it was resolved to, if any.
    pub entity_id: Option<i64>,
    /// How well it matched (0..1).
    pub match_score: Option<f32>,
    /// When it was ingested (or last re-ingested).
    pub ingested_at: DateTime<Utc>,
}

/// Input for a source record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSourceRecord {
    /// Source name: `[a-z0-9][a-z0-9_.-]{0,63}`.
    pub source: String,
    /// Id in the source: 1-200 characters.
    pub external_id: String,
    /// The raw record; must be a JSON object.
    pub payload: Value,
    /// The entity it is resolved to, if known.
    pub entity_id: Option<i64>,
    /// The match score (0..1), if resolved.
    pub match_score: Option<f32>,
}

/// One page of a keyset-paginated listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The rows, in id order.
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<i64>,
}

impl<T> Page<T> {
    pub(crate) fn from_rows(items: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Self {
        let next = if items.len() as i64 == limit {
            items.last().map(id)
        } else {
            None
        };
        Self { items, next }
    }
}

pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), DbError> {
    if value.trim().is_empty() {
        return Err(DbError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(DbError::invalid(
            field,
            format!("is longer than {max} characters"),
        ));
    }
    if value.contains('\0') {
        return Err(DbError::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

pub(crate) fn check_object(field: &str, value: &Value) -> Result<(), DbError> {
    if value.is_object() {
        Ok(())
    } else {
        Err(DbError::invalid(field, "must be a JSON object"))
    }
}

impl NewEntity {
    /// Checks the input against the schema's rules.
    pub fn validate(&self) -> Result<(), DbError> {
        check_text("name", &self.name, 500)?;
        if super::normalize_name(&self.name).is_empty() {
            return Err(DbError::invalid("name", "must contain a letter or digit"));
        }
        check_object("attributes", &self.attributes)
    }
}

impl NewSourceRecord {
    /// Checks the input against the schema's rules.
    pub fn validate(&self) -> Result<(), DbError> {
        let s = self.source.as_bytes();
        let source_ok = !s.is_empty()
            && s.len() <= 64
            && (s[0].is_ascii_lowercase() || s[0].is_ascii_digit())
            && s.iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b));
        if !source_ok {
            return Err(DbError::invalid(
                "source",
                format!("{:?} must match [a-z0-9][a-z0-9_.-]{{0,63}}", self.source),
            ));
        }
        check_text("external_id", &self.external_id, 200)?;
        check_object("payload", &self.payload)?;
        if let Some(score) = self.match_score
            && !(0.0..=1.0).contains(&score)
        {
            return Err(DbError::invalid(
                "match_score",
                format!("{score} is not between 0 and 1"),
            ));
        }
        Ok(())
    }
}

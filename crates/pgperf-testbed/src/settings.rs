//! The test bed's settings, read from the environment once, here and nowhere else in this
//! crate, and checked as they are read: a malformed value is an error naming its variable.

use crate::db::DatabaseUrl;
use crate::placement::Placement;
use crate::postgres::{
    CONTAINER_UPDATE_VAR, DATABASE_URL_VAR, DEFAULT_IMAGE, IMAGE_VAR, PLACEMENT_VAR, ServerError,
};

/// Where the test bed's PostgreSQL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// An external server to clone databases on (`PGPERF_DATABASE_URL`); none: a container.
    pub database_url: Option<DatabaseUrl>,
    /// The container's image, `(name, tag)` (`PGPERF_PG_IMAGE`, default `postgres:15`).
    pub image: (String, String),
    /// `docker update` arguments for the run's container (`PGPERF_CONTAINER_UPDATE`), to
    /// reproduce another machine's make-up on this one; empty: none.
    pub container_update: String,
    /// Whether timed runs place the client and the server apart (`PGPERF_PLACEMENT`:
    /// `apart`, the default, or `as-is`).
    pub placement: Placement,
}

impl Settings {
    /// Reads the process's environment.
    pub fn from_env() -> Result<Self, ServerError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (testable); blank values count as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ServerError> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let database_url = set(DATABASE_URL_VAR)
            .map(|text| DatabaseUrl::parse(&text))
            .transpose()
            .map_err(|source| ServerError::BadUrl {
                var: DATABASE_URL_VAR,
                source,
            })?;
        let image = parse_image(&set(IMAGE_VAR).unwrap_or_else(|| DEFAULT_IMAGE.to_owned()))?;
        let container_update = set(CONTAINER_UPDATE_VAR).unwrap_or_default();
        let placement = match set(PLACEMENT_VAR).as_deref() {
            None | Some("apart") => Placement::Apart,
            Some("as-is") => Placement::AsIs,
            Some(other) => {
                return Err(ServerError::BadVariable {
                    var: PLACEMENT_VAR,
                    reason: format!("{other:?} is not apart or as-is"),
                });
            }
        };
        Ok(Self {
            database_url,
            image,
            container_update,
            placement,
        })
    }
}

/// `name:tag`; the tag follows the last ':' unless that ':' belongs to a registry's port.
fn parse_image(value: &str) -> Result<(String, String), ServerError> {
    match value.rsplit_once(':') {
        Some((name, tag)) if !name.is_empty() && !tag.is_empty() && !tag.contains('/') => {
            Ok((name.to_owned(), tag.to_owned()))
        }
        _ => Err(ServerError::BadVariable {
            var: IMAGE_VAR,
            reason: format!(
                "{value:?} is not NAME:TAG (for example postgres:15 or pgperf-local/postgres:15-debian)"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn unset_means_a_container_of_the_default_image() {
        let s = Settings::from_vars(vars(&[(DATABASE_URL_VAR, "  ")])).unwrap();
        assert_eq!(s.database_url, None);
        assert_eq!(s.image, ("postgres".to_owned(), "15".to_owned()));
        assert_eq!(s.container_update, "");
        assert_eq!(s.placement, Placement::Apart);
    }

    #[test]
    fn a_placement_is_apart_or_as_is() {
        let s = Settings::from_vars(vars(&[(PLACEMENT_VAR, "as-is")])).unwrap();
        assert_eq!(s.placement, Placement::AsIs);
        let err = Settings::from_vars(vars(&[(PLACEMENT_VAR, "split")])).unwrap_err();
        assert!(err.to_string().contains(PLACEMENT_VAR), "{err}");
    }

    #[test]
    fn an_image_with_a_registry_port_keeps_it_in_the_name() {
        let s = Settings::from_vars(vars(&[(IMAGE_VAR, "localhost:5000/pg:15")])).unwrap();
        assert_eq!(s.image, ("localhost:5000/pg".to_owned(), "15".to_owned()));
        let err = Settings::from_vars(vars(&[(IMAGE_VAR, "localhost:5000/pg")])).unwrap_err();
        assert!(err.to_string().contains(IMAGE_VAR), "{err}");
    }

    #[test]
    fn a_malformed_url_names_its_variable_and_not_its_password() {
        let url = "postgres://u:s3cret@host:notaport/db";
        let err = Settings::from_vars(vars(&[(DATABASE_URL_VAR, url)])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(DATABASE_URL_VAR), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}

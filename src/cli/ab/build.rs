//! The two binaries of a paired run. The head is the running binary; the base is built from
//! a git worktree of its revision into the SAME target folder, so the dependencies compiled
//! for the head serve the base too and only the pgperf crate itself is compiled again (its
//! path differs, so cargo keeps both builds side by side). Each binary is copied out of the
//! target folder, where the next build would overwrite it, and a base binary is kept per
//! revision and profile, so a second run against the same base builds nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// A revision resolved to its commit.
#[derive(Debug, Clone)]
pub struct Revision {
    /// What the user gave (`HEAD~1`, a branch, a SHA).
    pub given: String,
    /// The full commit SHA.
    pub sha: String,
}

impl Revision {
    /// Resolves `given` in the repository at `repo`; an unknown revision is a usage error.
    pub fn resolve(repo: &Path, given: &str) -> Result<Self, super::super::Failure> {
        let sha = git(
            repo,
            &["rev-parse", "--verify", &format!("{given}^{{commit}}")],
        )
        .map_err(|e| super::super::Failure::Usage(format!("--base {given:?}: {e:#}")))?;
        Ok(Self {
            given: given.to_owned(),
            sha,
        })
    }

    /// The first 12 characters of the SHA.
    pub fn short(&self) -> &str {
        &self.sha[..12.min(self.sha.len())]
    }
}

/// Runs git in `repo` and returns its trimmed standard output.
pub fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Where the binaries are built and kept.
#[derive(Debug, Clone)]
pub struct Builds {
    /// The repository's top folder.
    pub repo: PathBuf,
    /// Cargo's target folder (the running binary's).
    pub target: PathBuf,
    /// The profile of the running binary, which the base is built with too.
    pub profile: &'static str,
    /// Where copies of the binaries are kept: in the target folder, whatever `--results` is,
    /// so that a base is built once per revision and profile.
    pub bin: PathBuf,
}

impl Builds {
    /// The folders for the running binary.
    pub fn here() -> anyhow::Result<Self> {
        let repo = PathBuf::from(git(Path::new("."), &["rev-parse", "--show-toplevel"])?);
        let exe = std::env::current_exe().context("locating the running binary")?;
        let target = exe
            .parent()
            .and_then(Path::parent)
            .filter(|t| t.join("CACHEDIR.TAG").exists())
            .map_or_else(|| repo.join("target"), Path::to_path_buf);
        let profile = if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        };
        Ok(Self {
            repo,
            bin: target.join("pgperf-ab-bin"),
            target,
            profile,
        })
    }

    fn profile_dir(&self) -> &'static str {
        if self.profile == "dev" {
            "debug"
        } else {
            self.profile
        }
    }

    /// A copy of the running binary (the head), safe from the base build's overwrite.
    pub fn head(&self) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.bin)?;
        let to = self.bin.join(format!("pgperf-head-{}", std::process::id()));
        let exe = std::env::current_exe()?;
        std::fs::copy(&exe, &to).with_context(|| format!("copying {}", exe.display()))?;
        Ok(to)
    }

    /// The base binary for `rev`, built unless a copy of it is kept already.
    pub fn base(&self, rev: &Revision) -> anyhow::Result<PathBuf> {
        let to = self
            .bin
            .join(format!("pgperf-base-{}-{}", rev.short(), self.profile));
        if to.exists() {
            eprintln!(
                "pgperf ab: base {} already built ({})",
                rev.short(),
                to.display()
            );
            return Ok(to);
        }
        let tree = self
            .target
            .join(format!("pgperf-ab-worktree-{}", rev.short()));
        let _ = git(
            &self.repo,
            &["worktree", "remove", "--force", &tree.to_string_lossy()],
        );
        git(
            &self.repo,
            &[
                "worktree",
                "add",
                "--detach",
                "--force",
                &tree.to_string_lossy(),
                &rev.sha,
            ],
        )?;
        let built = mark_as_base(&tree).and_then(|()| self.cargo_build(&tree));
        let _ = git(
            &self.repo,
            &["worktree", "remove", "--force", &tree.to_string_lossy()],
        );
        built?;
        let exe = self.target.join(self.profile_dir()).join("pgperf");
        std::fs::create_dir_all(&self.bin)?;
        std::fs::copy(&exe, &to).with_context(|| format!("copying {}", exe.display()))?;
        Ok(to)
    }

    /// Puts `head` back as the target folder's binary: the base's build replaced it there.
    pub fn restore_head(&self, head: &Path) -> anyhow::Result<()> {
        replace_file(head, &self.target.join(self.profile_dir()).join("pgperf"))
    }

    fn cargo_build(&self, tree: &Path) -> anyhow::Result<()> {
        eprintln!(
            "pgperf ab: building the base ({} profile) in {} ...",
            self.profile,
            tree.display()
        );
        let started = std::time::Instant::now();
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(tree)
            .args([
                "build",
                "--quiet",
                "--locked",
                "--bin",
                "pgperf",
                "--profile",
                self.profile,
            ])
            .env("CARGO_TARGET_DIR", &self.target)
            .status()
            .context("running cargo build for the base")?;
        if !status.success() {
            bail!("cargo build of the base failed ({status}); see its output above");
        }
        eprintln!(
            "pgperf ab: base built in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// The version suffix of the base's checkout.
const BASE_VERSION_SUFFIX: &str = "-ab-base";

/// Gives the base's checkout a package version of its own (`<version>-ab-base`, in
/// Cargo.toml and Cargo.lock). Cargo names a path package's artifacts by its name and
/// version, not its path, and judges them fresh by file times: without this, the base's
/// build takes the head's artifact slots in the shared target folder, and a later
/// `cargo build` of the head can find them fresh and keep the base's code.
fn mark_as_base(tree: &Path) -> anyhow::Result<()> {
    let edit = |file: &str, find: &dyn Fn(&str) -> Option<usize>| -> anyhow::Result<()> {
        let path = tree.join(file);
        let mut text =
            std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        let end =
            find(&text).with_context(|| format!("no pgperf version in {}", path.display()))?;
        text.insert_str(end, BASE_VERSION_SUFFIX);
        Ok(std::fs::write(&path, text)?)
    };
    // The closing quote of the first `version = "..."` after `needle`.
    let after = |needle: String| {
        move |text: &str| {
            let at = text.find(&needle)? + needle.len();
            let v = text[at..].find("version = \"")? + at + "version = \"".len();
            Some(text[v..].find('"')? + v)
        }
    };
    let package = || "[package]".to_owned();
    edit("Cargo.toml", &after(package()))?;
    edit("Cargo.lock", &after("name = \"pgperf\"\n".to_owned()))?;
    // The workspace's other crates, where the base has them: at the same relative paths,
    // their artifacts would take the head's slots the same way.
    for (manifest, name) in member_crates(tree)? {
        edit(&manifest, &after(package()))?;
        edit("Cargo.lock", &after(format!("name = \"{name}\"\n")))?;
    }
    Ok(())
}

/// The manifests (relative to the workspace root) and package names of the crates under
/// `crates/`, where the tree has that folder.
fn member_crates(tree: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let Ok(dirs) = std::fs::read_dir(tree.join("crates")) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for dir in dirs {
        let dir = dir?.file_name().to_string_lossy().into_owned();
        let manifest = format!("crates/{dir}/Cargo.toml");
        let Ok(text) = std::fs::read_to_string(tree.join(&manifest)) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .with_context(|| format!("no package name in {manifest}"))?;
        found.push((manifest, name.to_owned()));
    }
    found.sort();
    Ok(found)
}

/// Replaces `to` with a copy of `from`, through a new file renamed over it: copying onto `to`
/// itself fails ("Text file busy") when `to` is the binary running, as it is on a second
/// `pgperf ab` against a base already built.
fn replace_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut staged = to.as_os_str().to_owned();
    staged.push(format!(".pgperf-ab-{}", std::process::id()));
    let staged = PathBuf::from(staged);
    std::fs::copy(from, &staged).with_context(|| format!("copying {}", from.display()))?;
    std::fs::rename(&staged, to).with_context(|| format!("restoring {}", to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB_MANIFEST: &str = "crates/pgperf-db/Cargo.toml";
    const SERVICE_MANIFEST: &str = "crates/pgperf-service/Cargo.toml";

    #[test]
    fn the_head_is_restored_over_a_binary_that_is_running() {
        let dir = tempfile::tempdir().unwrap();
        let (running, head) = (dir.path().join("pgperf"), dir.path().join("head"));
        std::fs::copy("/bin/sleep", &running).unwrap();
        std::fs::write(&head, "the head").unwrap();
        let mut child = Command::new(&running).arg("30").spawn().unwrap();
        // Copying onto a running binary is what failed: the file is busy.
        let copied = std::fs::copy(&head, &running);
        assert_eq!(
            copied.map_err(|e| e.raw_os_error()).unwrap_err(),
            Some(libc::ETXTBSY)
        );

        let replaced = replace_file(&head, &running);
        child.kill().unwrap();
        child.wait().unwrap();
        replaced.unwrap();
        assert_eq!(std::fs::read_to_string(&running).unwrap(), "the head");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no staged copy left"
        );
    }

    #[test]
    fn the_base_checkout_gets_a_version_of_its_own_in_the_manifest_and_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = "[package]\nname = \"pgperf\"\nversion = \"0.1.0\"\n\n[dependencies]\nx = { version = \"1\" }\n";
        let lock = "[[package]]\nname = \"other\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"pgperf\"\nversion = \"0.1.0\"\n";
        std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
        std::fs::write(dir.path().join("Cargo.lock"), lock).unwrap();

        mark_as_base(dir.path()).unwrap();

        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(
            read("Cargo.toml"),
            manifest.replacen("0.1.0", "0.1.0-ab-base", 1)
        );
        assert_eq!(
            read("Cargo.lock"),
            "[[package]]\nname = \"other\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"pgperf\"\nversion = \"0.1.0-ab-base\"\n"
        );
    }

    #[test]
    fn in_a_workspace_every_member_crate_gets_one_too() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = "[workspace]\nmembers = [\".\"]\n\n[workspace.package]\nedition = \"2024\"\n\n[package]\nname = \"pgperf\"\nversion = \"0.1.0\"\n";
        let db = "[package]\nname = \"pgperf-db\"\nversion = \"0.1.0\"\n";
        let service = "[package]\nname = \"pgperf-service\"\nversion = \"0.1.0\"\n";
        let lock = "[[package]]\nname = \"pgperf\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"pgperf-db\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"pgperf-service\"\nversion = \"0.1.0\"\n";
        std::fs::create_dir_all(dir.path().join("crates/pgperf-db")).unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
        std::fs::write(dir.path().join(DB_MANIFEST), db).unwrap();
        std::fs::create_dir_all(dir.path().join("crates/pgperf-service")).unwrap();
        std::fs::write(dir.path().join(SERVICE_MANIFEST), service).unwrap();
        std::fs::write(dir.path().join("Cargo.lock"), lock).unwrap();

        mark_as_base(dir.path()).unwrap();

        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(
            read("Cargo.toml"),
            manifest.replace("0.1.0", "0.1.0-ab-base")
        );
        assert_eq!(read(DB_MANIFEST), db.replace("0.1.0", "0.1.0-ab-base"));
        assert_eq!(
            read(SERVICE_MANIFEST),
            service.replace("0.1.0", "0.1.0-ab-base")
        );
        assert_eq!(read("Cargo.lock"), lock.replace("0.1.0", "0.1.0-ab-base"));
    }
}

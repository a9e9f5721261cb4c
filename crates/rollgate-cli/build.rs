//! Stamp the git commit into the binary: `rollgate --version` prints `rollgate 0.1.0 (commit
//! 0123456789ab)`. Source: `$ROLLGATE_GIT_COMMIT` when set (a build from a source tarball, or a
//! packager pinning it), else `git rev-parse` in the source tree, else `unknown` (no git, or not
//! a checkout). Cargo re-runs this when HEAD or the branch it points to moves, so a commit
//! rebuilds only this crate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=ROLLGATE_GIT_COMMIT");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let pinned = std::env::var("ROLLGATE_GIT_COMMIT")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let commit = pinned.or_else(|| {
        let commit = git(&dir, &["rev-parse", "--short=12", "HEAD"])?;
        // Re-run when HEAD moves: HEAD itself (a checkout), the branch it names (a commit), and
        // packed-refs (a gc). A worktree keeps HEAD in its own git dir and refs in the common one.
        let abs = |p: String| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { dir.join(p) }
        };
        let git_dir = git(&dir, &["rev-parse", "--git-dir"]).map(abs);
        let common = git(&dir, &["rev-parse", "--git-common-dir"]).map(abs);
        let branch = git(&dir, &["symbolic-ref", "-q", "HEAD"]);
        let mut watch = Vec::new();
        if let Some(g) = &git_dir {
            watch.push(g.join("HEAD"));
        }
        if let Some(c) = &common {
            watch.push(c.join("packed-refs"));
            if let Some(b) = &branch {
                watch.push(c.join(b));
            }
        }
        // A path that does not exist would make cargo re-run this on every build.
        for p in watch.into_iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", p.display());
        }
        Some(commit)
    });
    let commit = commit.unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=ROLLGATE_GIT_COMMIT={commit}");
}

//! Records the commit the binary is built from, for `allocwatch --version`: the
//! `ALLOCWATCH_COMMIT` environment variable when set (a package built from a tarball), else
//! `git rev-parse --short=12 HEAD`, else `unknown`. Nothing else is generated here.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ALLOCWATCH_COMMIT");
    let commit = std::env::var("ALLOCWATCH_COMMIT").ok().filter(|c| !c.trim().is_empty()).or_else(git_head);
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the ref it points to (a commit).
    if let Some(dir) = git_dir() {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Ok(head) = std::fs::read_to_string(format!("{dir}/HEAD")) {
            if let Some(r) = head.trim().strip_prefix("ref: ") {
                println!("cargo:rerun-if-changed={dir}/{r}");
                println!("cargo:rerun-if-changed={dir}/packed-refs");
            }
        }
    }
    println!("cargo:rustc-env=ALLOCWATCH_COMMIT={}", commit.as_deref().map(str::trim).unwrap_or("unknown"));
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn git_head() -> Option<String> {
    git(&["rev-parse", "--short=12", "HEAD"])
}

fn git_dir() -> Option<String> {
    git(&["rev-parse", "--absolute-git-dir"])
}

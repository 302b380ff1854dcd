//! The OS packages, installed for real. `tests/run.sh` builds them (`packaging/build.sh`, twice:
//! revisions 1 and 2) and exports `AW_PACKAGE_DIR`; this test unpacks a fresh Debian root
//! (`tests/infra/debian/root.sh`: debootstrap minbase, cached), installs the `.deb` with dpkg
//! in it, runs the installed binary as the service user, checks owners and modes, upgrades to
//! the second build with an operator's edit in the configuration, removes and purges it; then
//! reads the `.rpm`'s files, scripts and dependencies with `rpm -qp` (Debian's rpm).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn package_dir(test: &str) -> Option<PathBuf> {
    let env = server_env(test, &["AW_PACKAGE_DIR"])?;
    Some(PathBuf::from(&env["AW_PACKAGE_DIR"]))
}

/// The one file in `dir` whose name starts with `prefix` and ends with `suffix`.
fn artefact(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix)))
        .collect();
    assert_eq!(found.len(), 1, "expected one {prefix}*{suffix} in {}: {found:?}", dir.display());
    found.into_iter().next().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{}", out.status, text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command inside the root, as root (`user = None`) or as another user.
fn chroot(root: &Path, user: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new("chroot");
    if let Some(u) = user {
        c.arg(format!("--userspec={u}:{u}"));
    }
    c.arg(root).args(args).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("LANG", "C.UTF-8").env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// `owner:group mode` of paths inside the root, read with the root's own stat and passwd.
fn stat(root: &Path, path: &str) -> String {
    must(&mut chroot(root, None, &["stat", "-c", "%U:%G %a", path])).trim().to_string()
}

fn dpkg_version(root: &Path) -> String {
    must(&mut chroot(root, None, &["dpkg-query", "-W", "-f", "${Version} ${db:Status-Abbrev}", "allocwatch"])).trim().to_string()
}

#[test]
fn the_deb_installs_upgrades_and_removes_in_a_fresh_debian_root_keeping_config_and_store() {
    let Some(dir) = package_dir("the_deb_installs_upgrades_and_removes_in_a_fresh_debian_root_keeping_config_and_store") else { return };
    let v = env!("CARGO_PKG_VERSION");
    let deb1 = artefact(&dir, &format!("allocwatch_{v}-"), "-1_amd64.deb");
    let deb2 = artefact(&dir, &format!("allocwatch_{v}-"), "-2_amd64.deb");
    let scratch = tempfile::tempdir().unwrap();
    let sysroot = scratch.path().join("root");
    must(Command::new("bash").arg(root().join("tests/infra/debian/root.sh")).arg("bookworm").arg(&sysroot));
    std::fs::copy(&deb1, sysroot.join("tmp/allocwatch-1.deb")).unwrap();
    std::fs::copy(&deb2, sysroot.join("tmp/allocwatch-2.deb")).unwrap();
    assert!(!sysroot.join("usr/bin/allocwatch").exists());

    // Install: dpkg resolves nothing itself, so this also proves the package needs only what a
    // minimal Debian has (its Depends are libc and libgcc).
    must(&mut chroot(&sysroot, None, &["dpkg", "-i", "/tmp/allocwatch-1.deb"]));
    assert_eq!(dpkg_version(&sysroot), format!("{v}-1 ii"));
    let version = must(&mut chroot(&sysroot, None, &["allocwatch", "--version"]));
    assert!(version.starts_with(&format!("allocwatch {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");
    assert!(!version.contains("unknown"), "the package names its commit: {version}");

    // The service user, and who owns what.
    let passwd = must(&mut chroot(&sysroot, None, &["getent", "passwd", "allocwatch"]));
    let f: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!((f[5], f[6]), ("/var/lib/allocwatch", "/usr/sbin/nologin"), "{passwd}");
    assert!(f[2].parse::<u32>().unwrap() < 1000, "a system uid: {passwd}");
    let expected = [
        ("/var/lib/allocwatch", "allocwatch:allocwatch 750"),
        ("/etc/allocwatch", "root:allocwatch 750"),
        ("/etc/allocwatch/allocwatch.toml", "root:allocwatch 640"),
        ("/etc/allocwatch/allocwatch.env", "root:allocwatch 640"),
        ("/etc/allocwatch/allocations.csv", "root:allocwatch 640"),
        ("/usr/bin/allocwatch", "root:root 755"),
        ("/usr/lib/systemd/system/allocwatch.service", "root:root 644"),
        ("/usr/share/man/man1/allocwatch.1.gz", "root:root 644"),
        ("/usr/share/man/man1/allocwatch-check.1.gz", "root:root 644"),
        ("/usr/share/bash-completion/completions/allocwatch", "root:root 644"),
        ("/usr/share/zsh/vendor-completions/_allocwatch", "root:root 644"),
        ("/usr/share/fish/vendor_completions.d/allocwatch.fish", "root:root 644"),
        ("/usr/share/allocwatch/templates/fr/message.txt.j2", "root:root 644"),
    ];
    for (path, want) in expected {
        assert_eq!(stat(&sysroot, path), want, "{path}");
    }
    let conffiles = must(&mut chroot(&sysroot, None, &["cat", "/var/lib/dpkg/info/allocwatch.conffiles"]));
    for c in ["/etc/allocwatch/allocwatch.toml", "/etc/allocwatch/allocwatch.env", "/etc/allocwatch/allocations.csv", "/etc/allocwatch/adjustments.csv"] {
        assert!(conffiles.lines().any(|l| l == c), "{c} is a conffile: {conffiles}");
    }
    let unit = std::fs::read_to_string(sysroot.join("usr/lib/systemd/system/allocwatch.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/bin/allocwatch --config /etc/allocwatch/allocwatch.toml run\n"), "{unit}");
    let man = must(&mut chroot(&sysroot, None, &["sh", "-c", "gzip -dc /usr/share/man/man1/allocwatch-check.1.gz"]));
    assert!(man.contains(".TH allocwatch-check 1") && man.contains("\\-\\-format"), "{}", &man[..man.len().min(400)]);
    let bash = std::fs::read_to_string(sysroot.join("usr/share/bash-completion/completions/allocwatch")).unwrap();
    assert!(bash.contains("complete -F _allocwatch") && bash.contains("backfill"), "bash completion names the commands");

    // The installed configuration, read as the service user (through the group's read bit).
    // As shipped its secrets come from the env file, which systemd loads (EnvironmentFile=):
    // without it the check names the missing variable; with it the configuration is valid.
    let bare = run(&mut chroot(&sysroot, Some("allocwatch"), &["allocwatch", "--config", "/etc/allocwatch/allocwatch.toml", "config", "check"]));
    assert_eq!(bare.status.code(), Some(2), "{}", text(&bare));
    assert!(text(&bare).contains("ALLOCWATCH_SMTP_PASSWORD is not set"), "{}", text(&bare));
    let with_env = "set -a; . /etc/allocwatch/allocwatch.env; set +a; exec allocwatch --config /etc/allocwatch/allocwatch.toml config check";
    let checked = must(&mut chroot(&sysroot, Some("allocwatch"), &["sh", "-c", with_env]));
    assert!(checked.contains("OK") && checked.contains("0 allocations") && checked.contains("store /var/lib/allocwatch/allocwatch.sqlite"), "{checked}");

    // The demo, with the installed binary, as the service user, into the state directory.
    let demo = sysroot.join("tmp/demo");
    copy_tree(&root().join("config/demo"), &demo.join("demo"));
    std::fs::copy(root().join("config/demo.toml"), demo.join("demo.toml")).unwrap();
    must(&mut chroot(&sysroot, None, &["chmod", "-R", "a+rX", "/tmp/demo"]));
    must(&mut chroot(&sysroot, Some("allocwatch"), &["allocwatch", "--config", "/tmp/demo/demo.toml", "config", "check"]));
    let demo_out = must(&mut chroot(&sysroot, Some("allocwatch"), &["allocwatch", "--config", "/tmp/demo/demo.toml", "--store", "/var/lib/allocwatch/allocwatch.sqlite", "check"]));
    assert!(demo_out.contains("By status: ended 1, exhausted 3, not_started 1, on_track 16, over_pace 11, under_pace 6"), "{demo_out}");
    let store = sysroot.join("var/lib/allocwatch/allocwatch.sqlite");
    let store_bytes = std::fs::read(&store).unwrap();
    assert_eq!(stat(&sysroot, "/var/lib/allocwatch/allocwatch.sqlite").split(' ').next(), Some("allocwatch:allocwatch"));

    // Upgrade to the second build, with an operator's edit in a conffile: dpkg keeps the edit
    // (unchanged upstream, so no prompt), the owners and modes survive, the store is untouched.
    let edit = "\n# site edit: kept across upgrades\n";
    let conf = sysroot.join("etc/allocwatch/allocwatch.toml");
    let mut edited = std::fs::read_to_string(&conf).unwrap();
    edited.push_str(edit);
    std::fs::write(&conf, &edited).unwrap();
    must(&mut chroot(&sysroot, None, &["dpkg", "--force-confold", "-i", "/tmp/allocwatch-2.deb"]));
    assert_eq!(dpkg_version(&sysroot), format!("{v}-2 ii"));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited, "the operator's edit survives the upgrade");
    for (path, want) in expected {
        assert_eq!(stat(&sysroot, path), want, "after upgrade: {path}");
    }
    assert_eq!(std::fs::read(&store).unwrap(), store_bytes, "the upgrade leaves the store alone");
    must(&mut chroot(&sysroot, Some("allocwatch"), &["allocwatch", "--config", "/tmp/demo/demo.toml", "--store", "/var/lib/allocwatch/allocwatch.sqlite", "check", "--no-pull"]));

    // Remove: the program goes, the configuration (conffiles) and the store stay.
    must(&mut chroot(&sysroot, None, &["dpkg", "-r", "allocwatch"]));
    assert!(!sysroot.join("usr/bin/allocwatch").exists() && !sysroot.join("usr/share/man/man1/allocwatch.1.gz").exists());
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited, "removal keeps the configuration");
    assert!(store.is_file(), "removal keeps the store");
    // Purge: the configuration and dpkg's records of its modes go; the store and its owner stay.
    let purged = run(&mut chroot(&sysroot, None, &["dpkg", "-P", "allocwatch"]));
    assert!(purged.status.success(), "{}", text(&purged));
    assert!(text(&purged).contains("the store in /var/lib/allocwatch is kept"), "{}", text(&purged));
    assert!(!sysroot.join("etc/allocwatch").exists(), "purge removes /etc/allocwatch");
    assert!(store.is_file() && stat(&sysroot, "/var/lib/allocwatch").starts_with("allocwatch:allocwatch"), "purge keeps the store");
    // `--list` exits 1 when no override is left at all.
    let overrides = String::from_utf8_lossy(&run(&mut chroot(&sysroot, None, &["dpkg-statoverride", "--list"])).stdout).into_owned();
    assert!(!overrides.contains("allocwatch"), "purge removes its stat overrides: {overrides}");
}

#[test]
fn the_rpm_carries_the_same_files_its_scripts_and_dependencies() {
    let Some(dir) = package_dir("the_rpm_carries_the_same_files_its_scripts_and_dependencies") else { return };
    let rpm = artefact(&dir, &format!("allocwatch-{}", env!("CARGO_PKG_VERSION")), "-1.x86_64.rpm");
    let q = |args: &[&str]| must(Command::new("rpm").args(args).arg(&rpm));
    let listing = q(&["-qlp", "--scripts"]);
    for f in [
        "/usr/bin/allocwatch",
        "/usr/lib/systemd/system/allocwatch.service",
        "/etc/allocwatch/allocwatch.toml",
        "/etc/allocwatch/allocwatch.env",
        "/etc/allocwatch/allocations.csv",
        "/usr/share/man/man1/allocwatch.1.gz",
        "/usr/share/man/man1/allocwatch-check.1.gz",
        "/usr/share/bash-completion/completions/allocwatch",
        "/usr/share/zsh/site-functions/_allocwatch",
        "/usr/share/fish/vendor_completions.d/allocwatch.fish",
        "/usr/share/allocwatch/templates/en/message.txt.j2",
        "/usr/share/doc/allocwatch/README.md",
    ] {
        assert!(listing.lines().any(|l| l == f), "{f} missing from the rpm:\n{listing}");
    }
    // %pre makes the user before files owned by its group are laid down; %post the store's
    // directory; %preun stops the service on removal only; nothing removes the store.
    let pre = section(&listing, "preinstall scriptlet");
    assert!(pre.contains("groupadd --system allocwatch") && pre.contains("useradd --system"), "{pre}");
    let post = section(&listing, "postinstall scriptlet");
    assert!(post.contains("chown allocwatch:allocwatch /var/lib/allocwatch") && post.contains("systemctl try-restart allocwatch.service"), "{post}");
    let preun = section(&listing, "preuninstall scriptlet");
    assert!(preun.contains("\"$1\" -eq 0") && preun.contains("systemctl stop allocwatch.service"), "{preun}");
    assert!(!listing.contains("rm -rf /var/lib/allocwatch"), "no scriptlet deletes the store");
    // Configuration files are %config(noreplace), group allocwatch; the binary is root's.
    let configs = q(&["-qcp"]);
    for c in ["/etc/allocwatch/allocwatch.toml", "/etc/allocwatch/allocwatch.env", "/etc/allocwatch/allocations.csv", "/etc/allocwatch/adjustments.csv"] {
        assert!(configs.lines().any(|l| l == c), "{c} is a config file: {configs}");
    }
    let dump = q(&["-qp", "--dump"]);
    let line = |path: &str| dump.lines().find(|l| l.starts_with(&format!("{path} "))).unwrap_or_else(|| panic!("{path} not in --dump")).to_string();
    // --dump: path size mtime digest mode owner group isconfig isdoc rdev symlink
    let toml = line("/etc/allocwatch/allocwatch.toml");
    let t: Vec<&str> = toml.split(' ').collect();
    assert_eq!((t[4], t[5], t[6], t[7]), ("0100640", "root", "allocwatch", "1"), "{toml}");
    let bin: Vec<String> = line("/usr/bin/allocwatch").split(' ').map(String::from).collect();
    assert_eq!((bin[4].as_str(), bin[5].as_str(), bin[7].as_str()), ("0100755", "root", "0"));
    let requires = q(&["-qp", "--requires"]);
    assert!(requires.lines().any(|l| l.starts_with("shadow-utils")), "{requires}");
    assert!(requires.lines().any(|l| l.starts_with("libc.so.6")), "automatic library requirements: {requires}");
    let info = q(&["-qip"]);
    assert!(info.contains(&format!("Version     : {}", env!("CARGO_PKG_VERSION"))) && info.contains("License     : Apache-2.0"), "{info}");
}

/// The body of one scriptlet in `rpm -q --scripts` output (up to the next heading).
fn section(listing: &str, heading: &str) -> String {
    let start = listing.find(heading).unwrap_or_else(|| panic!("no {heading}:\n{listing}"));
    let rest = &listing[start..];
    let body = &rest[rest.find('\n').map_or(rest.len(), |i| i + 1)..];
    let end = body.find("scriptlet (using").and_then(|i| body[..i].rfind('\n')).unwrap_or(body.len());
    body[..end].to_string()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Under systemd (stderr is the stream named by `JOURNAL_STREAM`), each line starts with its
/// sd-daemon priority and carries no timestamp and no colour; the same variable inherited by a
/// process whose stderr goes elsewhere changes nothing.
#[test]
fn logs_to_the_journal_stream_carry_priorities_and_no_timestamps_or_colours() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let run = |journal: bool| {
        let log = dir.path().join(if journal { "journal.log" } else { "file.log" });
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        let stream = if journal { format!("{}:{}", meta.dev(), meta.ino()) } else { format!("{}:{}", meta.dev(), meta.ino() + 1) };
        let store = dir.path().join(if journal { "j.sqlite" } else { "f.sqlite" });
        let status = Command::new(env!("CARGO_BIN_EXE_allocwatch"))
            .args(["--config", root().join("config/demo.toml").to_str().unwrap(), "--store", store.to_str().unwrap(), "check"])
            .env("JOURNAL_STREAM", stream)
            .env("ALLOCWATCH_LOG", "debug")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(&log).unwrap()
    };
    let journal = run(true);
    // Every log line (tracing's) has a priority; the command's own summary on stderr ("alerts:
    // … queued") is not a log line and journald files it at its default priority.
    let logged: Vec<&str> = journal.lines().filter(|l| l.starts_with('<')).collect();
    assert!(logged.len() > 3, "{journal}");
    for line in journal.lines() {
        assert!(!line.contains('\x1b'), "colour in {line:?}");
        assert!(!line.contains("Z ") && !line.contains(" INFO ") && !line.contains(" DEBUG "), "timestamp or level word in {line:?}");
    }
    for line in &logged {
        let p = line.strip_prefix('<').and_then(|l| l.split_once('>')).map(|(p, _)| p);
        assert!(matches!(p, Some("3" | "4" | "6" | "7")), "bad priority prefix: {line:?}");
    }
    assert!(logged.iter().any(|l| l.starts_with("<6>")) && logged.iter().any(|l| l.starts_with("<7>")), "{journal}");
    let unprefixed = journal.lines().filter(|l| !l.starts_with('<')).count();
    assert!(unprefixed <= 2, "only the command's summary is unprefixed:\n{journal}");
    let file = run(false);
    let file_logs: Vec<&str> = file.lines().filter(|l| l.contains(" INFO ") || l.contains(" DEBUG ")).collect();
    assert_eq!(file_logs.len(), logged.len(), "the same events, in the plain format:\n{file}");
    assert!(file_logs.iter().all(|l| !l.starts_with('<') && l.contains("Z ")), "a file keeps timestamps:\n{file}");
}

//! The external commands the bench compares against (pg_dump, zstd, pg_restore, restic): bash
//! scripts with the connection in their environment, timed, with their peak RSS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stoa_backup::core::CommandSpec;
use stoa_backup::providers::postgres::PgConnection;

/// The plain dump every case starts from; `$STOA_DB` is the conninfo of the database.
const DUMP_Z0: &str = r#"pg_dump -Fc -Z0 --no-owner --no-privileges --dbname="$STOA_DB""#;
/// restic needs one; the repositories live only for one run.
const RESTIC_PASSWORD: &str = "stoa-bench";

/// GNU time, which reports the peak RSS of the script's processes.
const GNU_TIME: &str = "/usr/bin/time";

/// Where GNU time writes the peak RSS (KiB) of the script it ran.
fn rss_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("stoa-bench-rss-{}.txt", std::process::id()))
}

/// What one external command took.
pub struct Ran {
    pub wall: Duration,
    /// The largest RSS of any one process of the script, as GNU time reports it (bash waits
    /// for each of them), in bytes; `None` without `/usr/bin/time`.
    pub max_rss: Option<u64>,
    /// CPU time the machine was busy meanwhile (every process, the server's too).
    pub cpu: Option<std::time::Duration>,
}

/// `bash -e -o pipefail -c body`, with `$STOA_DB` the conninfo of `db` and the connection's
/// password and settings in the environment (never on a command line).
fn script(conn: &PgConnection, db: &str, body: &str) -> Command {
    // Through GNU time when it is there: a child forked from this process starts with this
    // process's resident size as its peak (Linux keeps the peak across exec), so the
    // `wait4` figure of a direct child would be ours, not the script's.
    let _ = std::fs::remove_file(rss_file());
    let mut cmd = if Path::new(GNU_TIME).exists() {
        let mut c = Command::new(GNU_TIME);
        c.args(["-f", "%M", "-o"]).arg(rss_file()).arg("bash");
        c
    } else {
        Command::new("bash")
    };
    cmd.args(["-e", "-o", "pipefail", "-c", body])
        .env("STOA_DB", conn.conninfo(db))
        .stdin(Stdio::null());
    let spec = conn.apply_env(CommandSpec::new("pg_dump"));
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    cmd
}

/// Runs `cmd` to completion, timed; panics with `what` when it fails.
fn run_timed(mut cmd: Command, what: &str) -> Ran {
    let mut status = 0;
    let ((pid, reaped, wall), cpu) = crate::support::busy_during(|| {
        let t0 = Instant::now();
        // Reaped by the wait4 below.
        #[allow(clippy::zombie_processes)]
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        let pid = child.id() as libc::pid_t;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own child, not yet waited for (std waits only when asked
        // to); wait4 rather than Child::wait because it also reports the peak RSS.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        (pid, reaped, t0.elapsed())
    });
    assert_eq!(
        reaped,
        pid,
        "wait for {what}: {}",
        std::io::Error::last_os_error()
    );
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(ok, "{what} failed (wait status {status})");
    // GNU time's figure (KiB), when the script ran under it; none otherwise (see `script`).
    let kib = std::fs::read_to_string(rss_file())
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let _ = std::fs::remove_file(rss_file());
    Ran {
        wall,
        max_rss: kib.filter(|k| *k > 0).map(|k| k * 1024),
        cpu,
    }
}

/// Runs a script that prints a number, untimed.
fn output_number(mut cmd: Command, what: &str) -> u64 {
    let out = cmd.output().unwrap_or_else(|e| panic!("start {what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what} printed {text:?}, not a number"))
}

/// Bytes of `pg_dump -Fc -Z0` of `db` (the size the benchmark sizes are given in).
pub fn raw_dump_size(conn: &PgConnection, db: &str) -> u64 {
    output_number(
        script(conn, db, &format!("{DUMP_Z0} | wc -c")),
        "pg_dump | wc -c",
    )
}

/// Untimed `pg_dump -Fc -Z0 > file`, flushed to disk so its writeback does not slow the
/// first timed case.
pub fn write_plain_dump(conn: &PgConnection, db: &str, file: &Path) {
    let mut cmd = script(conn, db, &format!(r#"{DUMP_Z0} > "$STOA_FILE"; sync"#));
    cmd.env("STOA_FILE", file);
    run_timed(cmd, "pg_dump -Fc -Z0 > file");
}

/// Case 1: `pg_dump -Fc -Z0 > /dev/null`, what no pipeline can beat.
pub fn ceiling(conn: &PgConnection, db: &str) -> Ran {
    run_timed(
        script(conn, db, &format!("{DUMP_Z0} > /dev/null")),
        "pg_dump > /dev/null",
    )
}

/// Cases 2 and 3: the same pipeline as ours written in shell (zstd -3, a file, a hash), and
/// with `verify` the same two archive checks as our verifier, after it.
pub fn shell_pipeline(conn: &PgConnection, db: &str, file: &Path, verify: bool) -> Ran {
    let mut body =
        format!(r#"{DUMP_Z0} | zstd -3 -T2 -q | tee "$STOA_FILE" | sha256sum > /dev/null; sync"#);
    if verify {
        // pg_restore --list stops reading after the table of contents, so zstd dies of
        // SIGPIPE (status 141): expected, not a failure.
        body.push_str(
            r#"
{ zstd -dc "$STOA_FILE" || [ $? -eq 141 ]; } | pg_restore --list > /dev/null
zstd -dc "$STOA_FILE" | pg_restore -f /dev/null"#,
        );
    }
    let mut cmd = script(conn, db, &body);
    cmd.env("STOA_FILE", file);
    run_timed(cmd, "the shell pipeline")
}

/// Case 4: the guide's method, `pg_dump --format=custom --compress=9 > file`.
pub fn dump_z9(conn: &PgConnection, db: &str, file: &Path) -> Ran {
    let body = r#"pg_dump --format=custom --compress=9 --dbname="$STOA_DB" > "$STOA_FILE""#;
    let mut cmd = script(conn, db, body);
    cmd.env("STOA_FILE", file);
    run_timed(cmd, "pg_dump -Z9 > file")
}

/// Whether `restic` can be run.
pub fn restic_installed() -> bool {
    Command::new("restic")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn restic(conn: &PgConnection, db: &str, repo: &Path, body: &str) -> Command {
    let mut cmd = script(conn, db, body);
    cmd.env("STOA_REPO", repo)
        .env("RESTIC_PASSWORD", RESTIC_PASSWORD);
    cmd
}

/// Case 5: a fresh restic repository (created untimed), then timed
/// `pg_dump -Z0 | restic backup --stdin`.
pub fn restic_backup(conn: &PgConnection, db: &str, repo: &Path) -> Ran {
    let init = r#"restic -r "$STOA_REPO" init -q --no-cache > /dev/null"#;
    run_timed(restic(conn, db, repo, init), "restic init");
    let body = format!(
        r#"{DUMP_Z0} | restic -r "$STOA_REPO" backup --stdin --stdin-filename stoa.dump -q --no-cache"#
    );
    run_timed(restic(conn, db, repo, &body), "pg_dump | restic backup")
}

/// Cases 8 and 9: `pg_restore` of the plain dump `file` into the existing, empty `target`.
pub fn pg_restore(conn: &PgConnection, target: &str, file: &Path, jobs: u32) -> Ran {
    let parallel = if jobs > 1 {
        format!(" --jobs={jobs}")
    } else {
        String::new()
    };
    let body = format!(
        r#"pg_restore --no-owner --no-privileges --exit-on-error{parallel} --dbname="$STOA_DB" "$STOA_FILE""#
    );
    let mut cmd = script(conn, target, &body);
    cmd.env("STOA_FILE", file);
    run_timed(cmd, "pg_restore")
}

/// Bytes of the files under `dir` (what a repository takes on disk, block rounding aside).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Flushes what the last case wrote, so its writeback is not charged to the next one.
pub fn settle() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

//! Exit statuses: 1 when every component failed, 2 for usage errors, 3 when some failed,
//! 130 / 143 when SIGINT / SIGTERM interrupted a backup (no manifest, nothing left
//! running, the previous run untouched). 0 is in the other tests.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{command, connect, local_config, small_database, stoa, Run, Workspace};

#[tokio::test]
async fn one_component_failing_among_others_exits_3() {
    let db = small_database("cli_partial", 10).await;
    let ws = Workspace::new();
    let missing = format!("{}_missing", db.name());
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            &format!(
                "  good:\n    type: postgres\n    url: ${{TEST_PG_URL}}\n  gone:\n    type: postgres\n    url: ${{TEST_PG_URL}}\n    databases: [{missing}]\n"
            ),
        ),
    );
    let env = [("TEST_PG_URL", db.url())];
    let run = stoa(ws.path(), &["backup", "--json"], &env).await.expect(3);
    let doc = run.json();
    assert_eq!(doc["verdict"], "partially_failed");
    assert_eq!(doc["components"][0]["component"], "good");
    assert_eq!(doc["components"][0]["status"], "complete");
    assert_eq!(doc["components"][1]["component"], "gone");
    assert_eq!(doc["components"][1]["status"], "failed");
    let errors = doc["components"][1]["errors"].to_string();
    assert!(
        errors.contains(&missing),
        "the failure names the database: {run}"
    );
    assert_eq!(
        ws.manifests().len(),
        1,
        "only the good component's run is a backup"
    );

    // Without --json: the failure on stderr, the status the same.
    let human = stoa(ws.path(), &["backup"], &env).await.expect(3);
    assert!(human.stderr.contains("error: gone:"), "{human}");
    assert!(human.stdout.contains("good -> local: complete"), "{human}");
    db.drop_db().await;
}

#[tokio::test]
async fn every_component_failing_exits_1() {
    let db = small_database("cli_failed", 1).await;
    let ws = Workspace::new();
    let missing = format!("{}_missing", db.name());
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            &format!("  gone:\n    type: postgres\n    url: ${{TEST_PG_URL}}\n    databases: [{missing}]\n"),
        ),
    );
    let run = stoa(
        ws.path(),
        &["backup", "--json"],
        &[("TEST_PG_URL", db.url())],
    )
    .await
    .expect(1);
    assert_eq!(run.json()["verdict"], "failed");
    assert!(ws.manifests().is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn usage_errors_exit_2_and_help_documents_every_status() {
    let ws = Workspace::new();
    stoa(ws.path(), &["frobnicate"], &[]).await.expect(2);
    stoa(ws.path(), &["list", "--label", "no-equals-sign"], &[])
        .await
        .expect(2);
    stoa(ws.path(), &["--log-level", "loud", "config", "check"], &[])
        .await
        .expect(2);
    let unknown = stoa(ws.path(), &["backup", "nope"], &[]).await.expect(2);
    assert!(
        unknown.stderr.contains("no component is named `nope`"),
        "{unknown}"
    );
    assert!(
        unknown.stderr.contains("the components are postgres"),
        "{unknown}"
    );
    let help = stoa(ws.path(), &["--help"], &[]).await.expect(0);
    for line in [
        "0    success",
        "1    failed",
        "2    usage or configuration error",
        "3    partially failed",
        "4    verification failed",
        "130  interrupted by SIGINT",
        "143  interrupted by SIGTERM",
    ] {
        assert!(help.stdout.contains(line), "--help lacks {line:?}:\n{help}");
    }
}

#[tokio::test]
async fn sigterm_during_a_backup_exits_143_without_a_manifest() {
    interrupted(libc::SIGTERM, 143, "SIGTERM").await;
}

#[tokio::test]
async fn sigint_during_a_backup_exits_130_without_a_manifest() {
    interrupted(libc::SIGINT, 130, "SIGINT").await;
}

/// A backup held behind a table lock (so it is surely in progress) gets `signal`: the
/// command exits with `status` within 10 s, writes no manifest, leaves no pg_dump behind,
/// and the run before it is untouched.
async fn interrupted(signal: i32, status: i32, name: &str) {
    let db = small_database("cli_signal", 100).await;
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(&ws, "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n"),
    );
    let env = [("TEST_PG_URL", db.url())];
    stoa(ws.path(), &["backup"], &env).await.expect(0);
    let before = ws.manifests();
    let previous = std::fs::read(&before[0]).expect("manifest");

    let locker = connect(db.url()).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE;")
        .await
        .expect("lock");
    let child = command(ws.path(), &["backup", "--json"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");

    let watcher = connect(db.admin_url()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&db.name()],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backup never reached the locked table"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sent = Instant::now();
    // SAFETY: kill(2) on the child's pid, which it still is: it is waited for below.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("stoa-backup did not exit within 10 s of {name}"))
        .expect("wait");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(sent.elapsed() < Duration::from_secs(10));
    let run = run.expect(status);
    let doc = run.json();
    assert_eq!(doc["verdict"], "interrupted");
    assert_eq!(doc["signal"], name);

    assert_eq!(
        ws.manifests(),
        before,
        "no manifest for the interrupted run: {run}"
    );
    assert_eq!(
        std::fs::read(&before[0]).expect("manifest"),
        previous,
        "the previous run is untouched"
    );
    assert!(
        no_pg_dump_of(db.name()),
        "a pg_dump of {} is still running",
        db.name()
    );

    locker.batch_execute("ROLLBACK").await.expect("unlock");
    drop((locker, watcher));
    db.drop_db().await;
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn sigterm_while_a_large_dump_streams_exits_143_and_leaves_no_partial_file() {
    // Random text does not compress: tens of megabytes keep the dump streaming for seconds.
    let db = crate::support::TestDatabase::create("cli_sigterm_stream").await;
    connect(db.url())
        .await
        .batch_execute(
            "CREATE TABLE blobs (id int PRIMARY KEY, body text NOT NULL);
             INSERT INTO blobs SELECT g, (SELECT string_agg(md5(random()::text || g || i), '')
                                          FROM generate_series(1, 40) i)
             FROM generate_series(1, 60000) g;",
        )
        .await
        .expect("seed");
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(&ws, "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n"),
    );
    let env = [("TEST_PG_URL", db.url())];
    stoa(ws.path(), &["backup"], &env).await.expect(0);
    let before = ws.manifests();
    // The previous run's files (the lease file beside the runs changes with every run).
    let previous: Vec<(std::path::PathBuf, Vec<u8>)> = files_under(&ws.backups().join("runs"))
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect();

    let child = command(ws.path(), &["backup", "--json"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    // Wait until the new run is writing its dump: a temporary file with bytes in it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let streaming = loop {
        let partial = files_under(&ws.backups()).into_iter().find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
                && std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false)
        });
        if let Some(p) = partial {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the second backup never started writing its dump"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // SAFETY: kill(2) on the child's pid, which it still is: it is waited for below.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("stoa-backup did not exit within 10 s of SIGTERM")
        .expect("wait");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
    .expect(143);
    assert_eq!(run.json()["verdict"], "interrupted");
    assert!(
        !streaming.exists(),
        "the partial dump {} is left",
        streaming.display()
    );
    let leftovers: Vec<_> = files_under(&ws.backups())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert_eq!(
        ws.manifests(),
        before,
        "no manifest for the interrupted run"
    );
    for (path, bytes) in &previous {
        assert_eq!(
            &std::fs::read(path).expect("the previous run's file"),
            bytes,
            "{} changed",
            path.display()
        );
    }
    assert!(no_pg_dump_of(db.name()), "a pg_dump is still running");
    db.drop_db().await;
}

/// Whether no process runs `pg_dump` on `database` (after a moment for the kill to land).
fn no_pg_dump_of(database: &str) -> bool {
    let running = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .any(|c| c.contains("pg_dump") && c.contains(database))
    };
    for _ in 0..20 {
        if !running() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

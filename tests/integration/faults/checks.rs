//! What a crashed, killed or damaged run may never leave behind, checked on the sink.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use stoa_backup::core::codec::hash::sha256_hex;
use stoa_backup::core::{
    Catalog, ChecksumVerifier, Keyring, RunFilter, RunId, Sink, Verifier, VerifyContext,
};
use stoa_backup::providers::postgres::{PgArchiveVerifier, DUMP_CONTENT_TYPE};

use crate::files::files_under;
pub(super) use crate::files::temp_files;

/// Checks every run the catalog lists as complete: its manifest names a dump, and every
/// artifact it names is in the sink at the recorded size, reads back with the recorded
/// digests (stored and plain), and — for dumps — passes `pg_restore --list` with the
/// recorded TOC count and a full read of its data blocks by pg_restore (the library's
/// archive verifier). Read-only: nothing is written to the runs. Returns the complete runs,
/// newest first.
pub(super) async fn assert_complete_runs_have_their_data(sink: &Arc<dyn Sink>) -> Vec<RunId> {
    let catalog = Catalog::new(sink.clone());
    let runs = catalog
        .list_runs(&RunFilter::default())
        .await
        .expect("list the complete runs");
    let keyring = Keyring::default();
    for run in &runs {
        let id = &run.run_id;
        let manifest = catalog
            .read_manifest(id)
            .await
            .unwrap_or_else(|e| panic!("run {id} is listed as complete: {e}"));
        assert!(
            manifest
                .artifacts
                .iter()
                .any(|a| a.content_type == DUMP_CONTENT_TYPE),
            "complete run {id} holds no dump: {manifest:#?}"
        );
        let listing = sink.list(&id.prefix()).await.expect("list the run");
        for a in &manifest.artifacts {
            let stored = listing
                .iter()
                .find(|o| o.key == a.key)
                .unwrap_or_else(|| panic!("complete run {id} lacks its artifact {}", a.key));
            assert_eq!(
                stored.size, a.stored_size,
                "complete run {id}: {} is not of its recorded size",
                a.key
            );
            let ctx = VerifyContext {
                sink: sink.as_ref(),
                artifact: a,
                keyring: &keyring,
            };
            let deep = ChecksumVerifier::deep().verify(&ctx).await.unwrap();
            assert!(deep.ok, "complete run {id}: {}: {}", a.key, deep.detail);
            if a.content_type == DUMP_CONTENT_TYPE {
                // pg_restore itself reads the blocks here: an oracle independent of the
                // library's own walk, which the pipelines under test use.
                let archive = PgArchiveVerifier::new()
                    .full_read_by_pg_restore(true)
                    .verify(&ctx)
                    .await
                    .unwrap();
                assert!(
                    archive.ok,
                    "complete run {id}: {} does not restore: {}",
                    a.key, archive.detail
                );
            }
        }
    }
    runs.into_iter().map(|r| r.run_id).collect()
}

/// Every file under the run's directory (hidden ones too), by path relative to it, with
/// its SHA-256: what must not change once the run is complete.
pub(super) fn run_digests(root: &Path, run: &RunId) -> BTreeMap<String, String> {
    let dir = root.join(run.prefix());
    let files = files_under(&dir);
    assert!(!files.is_empty(), "no file under {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            let rel = p.strip_prefix(&dir).unwrap().display().to_string();
            (rel, sha256_hex(&bytes))
        })
        .collect()
}

/// Dates `files` back by `age` (modification time), as if they had been left by a run that
/// long ago.
pub(super) fn age_files(files: &[PathBuf], age: Duration) {
    let then = SystemTime::now() - age;
    for p in files {
        std::fs::File::options()
            .write(true)
            .open(p)
            .and_then(|f| f.set_modified(then))
            .unwrap_or_else(|e| panic!("date back {}: {e}", p.display()));
    }
}

/// No temporary file under the sink's root is older than `grace`.
pub(super) fn assert_no_stale_temp_files(root: &Path, grace: Duration) {
    let now = SystemTime::now();
    let stale: Vec<String> = temp_files(root)
        .into_iter()
        .filter(|p| {
            let modified = std::fs::metadata(p)
                .and_then(|m| m.modified())
                .unwrap_or_else(|e| panic!("the age of {}: {e}", p.display()));
            now.duration_since(modified).unwrap_or_default() > grace
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        stale.is_empty(),
        "temporary files older than {grace:?} are left in the sink: {stale:#?}"
    );
}

/// A session on the server, as `pg_stat_activity` shows it.
pub(super) struct Session {
    pid: i32,
    application_name: String,
    pub(super) state: String,
    pub(super) wait_event_type: String,
    pub(super) query: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} ({}), {}, waiting for {:?}: {}",
            self.pid, self.application_name, self.state, self.wait_event_type, self.query
        )
    }
}

/// The sessions on `database` (but the caller's own).
pub(super) async fn sessions(admin: &tokio_postgres::Client, database: &str) -> Vec<Session> {
    admin
        .query(
            "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), \
                    coalesce(wait_event_type, ''), coalesce(query, '') \
             FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .expect("read pg_stat_activity")
        .iter()
        .map(|r| Session {
            pid: r.get(0),
            application_name: r.get(1),
            state: r.get(2),
            wait_event_type: r.get(3),
            query: r.get(4),
        })
        .collect()
}

/// Waits up to `timeout` until the server has no session on `database` (a process of the
/// killed backup that lived on would hold one); panics naming the sessions left.
pub(super) async fn assert_no_session_left(database: &str, timeout: Duration) {
    let admin = super::client(&stoa_backup_test_support::test_database_url()).await;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = sessions(&admin, database).await;
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions of the killed backup are still open on {database} after {timeout:?}: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! Replication (issue #18): real PostgreSQL dumps and file artifacts copied between a local
//! directory, the in-process S3 server and a Git bare remote, restored from the copies; a
//! copy killed (a real process, SIGKILL) and dropped mid-way, finished by the next pass; a
//! second pass that writes nothing; a restore served by the replica when the primary is down.

mod copies;
mod killed;
mod unreachable;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stoa_backup::core::{
    open_artifact, ArtifactRecord, ChecksumVerifier, FileSource, Keyring, Manifest, Pipeline,
    PipelineBuilder, Sink, ZstdCodec,
};
use stoa_backup::providers::postgres::{PgArchiveVerifier, PgConnection, PostgresSource};
use stoa_backup::storage::{GitSink, S3Credentials, S3Retry, S3Sink};
use stoa_backup_test_support::s3::S3Target;
use stoa_backup_test_support::{connect, test_database_url, TestDatabase};

const MIB: usize = 1024 * 1024;

/// A database with `rows` rows of some width in `t` (a dump of a few MB).
async fn database(rows: i64) -> TestDatabase {
    let db = TestDatabase::create("replicate").await;
    connect(db.url())
        .await
        .batch_execute(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, note text);
             INSERT INTO t SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
    db
}

/// A file artifact beside the dump.
fn config_file(dir: &Path) -> PathBuf {
    let file = dir.join("config.yaml");
    std::fs::write(&file, b"replicas: 3\nregion: eu-west-1\n").unwrap();
    file
}

/// PostgreSQL (verified with pg_restore) and a file, compressed, into `sink`.
fn pipeline(db: &TestDatabase, file: &Path, sink: Arc<dyn Sink>) -> PipelineBuilder {
    Pipeline::builder()
        .source(
            PostgresSource::builder(PgConnection::from_url(db.url()).unwrap())
                .build()
                .unwrap(),
        )
        .source(FileSource::new("config", file, "config.yaml"))
        .sink(sink)
        .compression(ZstdCodec::new(1).unwrap())
        .verifier(PgArchiveVerifier::new())
        .verifier(ChecksumVerifier::new())
}

fn s3_sink(t: &S3Target, prefix: &str) -> S3Sink {
    S3Sink::builder(&t.bucket)
        .endpoint(&t.endpoint)
        .region(&t.region)
        .allow_http(true)
        .prefix(prefix)
        .part_size(5 * MIB)
        .credentials(S3Credentials::new(&t.access_key, &t.secret_key))
        .retry(S3Retry {
            max_retries: 1,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            retry_timeout: Duration::from_secs(5),
        })
        .build()
        .unwrap()
}

async fn git_sink(tmp: &Path) -> GitSink {
    let remote = tmp.join("remote.git");
    stoa_backup::storage::git::git2::Repository::init_bare(&remote).unwrap();
    GitSink::builder(format!("file://{}", remote.display()), tmp.join("git-work"))
        .author("stoa-backup-test", "backup@example.com")
        .build()
        .await
        .unwrap()
}

/// Reads every artifact of `manifest` from `sink`, decoded, and checks the plain bytes
/// against the digest recorded when the source exported them: byte for byte the original.
async fn assert_plain_bytes_intact(sink: &dyn Sink, manifest: &Manifest, what: &str) {
    for a in &manifest.artifacts {
        let plain = open_artifact(sink, a, &Keyring::new()).await.unwrap();
        let bytes = stoa_backup::core::stream::collect(plain).await.unwrap();
        assert_eq!(bytes.len() as u64, a.plain_size, "{what}: {}", a.key);
        assert_eq!(
            stoa_backup::core::codec::hash::sha256_hex(&bytes),
            a.plain_sha256,
            "{what}: {}",
            a.key
        );
    }
}

/// The stored digests of a manifest, by key.
fn stored(manifest: &Manifest) -> Vec<(String, u64, String)> {
    let mut v: Vec<(String, u64, String)> = manifest
        .artifacts
        .iter()
        .map(|a: &ArtifactRecord| (a.key.to_string(), a.stored_size, a.stored_sha256.clone()))
        .collect();
    v.sort();
    v
}

/// Restores the PostgreSQL component of `plan`'s run into a new database and returns its
/// row count of `t`; the database is dropped.
async fn rows_restored(
    restore: &stoa_backup::core::Restore,
    plan: &stoa_backup::core::RestorePlan,
    target: &str,
) -> i64 {
    restore.apply(plan).await.unwrap();
    let c = PgConnection::from_url(&test_database_url()).unwrap();
    let url = format!(
        "postgres://{}@{}:{}/{target}",
        c.get_user(),
        c.get_host(),
        c.get_port()
    );
    let client = connect(&url).await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    drop(client);
    drop_database(target).await;
    n
}

async fn drop_database(name: &str) {
    connect(&test_database_url())
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

/// A directory sink, its root created.
fn local_sink(root: impl Into<PathBuf>) -> stoa_backup::storage::LocalSink {
    stoa_backup::storage::LocalSink::builder(root)
        .create_root(true)
        .build()
        .unwrap()
}

//! End-to-end tests of the foundation: pipeline, codecs, local sink, catalog, verification,
//! failure handling and cancellation.

use std::sync::Arc;
use std::time::Duration;

use stoa_backup::core::process::CommandSpec;
use stoa_backup::core::verify::ChecksumVerifier;
use stoa_backup::core::{
    Catalog, CommandSource, ErrorKind, ExistingDataPolicy, FileRestorer, FileSource, Keyring,
    ObjectKey, Pipeline, Restore, RunFilter, RunStatus, Sink, SinkExt, ZstdCodec,
};
use stoa_backup::storage::LocalSink;
use tokio_util::sync::CancellationToken;

use crate::restore_support::restore_component;

fn local_sink(dir: &std::path::Path) -> Arc<dyn Sink> {
    let sink = LocalSink::builder(dir.join("backups")).create_root(true);
    Arc::new(sink.build().expect("local sink"))
}

/// Pseudo-random but compressible text, deterministic per seed.
fn generated_text(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghij klmnop\n"[(x % 18) as usize]
        })
        .collect()
}

/// Every visible file under `dir`, relative, sorted.
fn visible_files(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn multi_artifact_run_round_trips_through_zstd_and_age_into_local_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(data_dir.join("nested/deeper")).unwrap();
    let big = generated_text(7, 3_000_000);
    std::fs::write(data_dir.join("big.txt"), &big).unwrap();
    std::fs::write(
        data_dir.join("nested/a.json"),
        br#"{"tenant":"acme","caf\xc3\xa9":true}"#,
    )
    .unwrap();
    std::fs::write(data_dir.join("nested/deeper/empty"), b"").unwrap();
    let single = generated_text(11, 1_234_567);
    std::fs::write(tmp.path().join("single.bin"), &single).unwrap();

    let (encryption, keyring) = stoa_backup_test_support::artifacts::age_keys();
    let sink = local_sink(tmp.path());
    let pipeline = Pipeline::builder()
        .source(FileSource::new("files", &data_dir, "tree.tar"))
        .source(FileSource::new(
            "single",
            tmp.path().join("single.bin"),
            "single.bin",
        ))
        .source(CommandSource::new(
            "cmd",
            "numbers.txt",
            CommandSpec::new("seq").args(["1", "200000"]),
        ))
        .sink(sink.clone())
        .compression(ZstdCodec::new(3).unwrap())
        .encryption(encryption)
        .verifier(ChecksumVerifier::new())
        .label("env", "test")
        .build()
        .unwrap();
    let report = pipeline.run().await.unwrap().into_result().unwrap();
    assert_eq!(report.manifest.artifacts.len(), 3);
    for a in &report.manifest.artifacts {
        assert_eq!(
            a.codecs.iter().map(|c| c.name()).collect::<Vec<_>>(),
            ["zstd", "age"]
        );
        assert!(a.is_verified(), "{a:?}");
        assert_ne!(a.plain_sha256, a.stored_sha256);
    }

    // Stored bytes hold no plaintext.
    let stored = std::fs::read(
        tmp.path().join("backups").join(
            report
                .manifest
                .artifacts
                .iter()
                .find(|a| a.component == "single")
                .unwrap()
                .key
                .as_str(),
        ),
    )
    .unwrap();
    assert!(!stored.windows(64).any(|w| w == &single[..64]));

    // Catalog sees one complete run with the label.
    let catalog = Catalog::new(sink.clone());
    let runs = catalog
        .list_runs(&RunFilter::default().label("env", "test"))
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, report.run_id);
    let manifest = catalog
        .latest_verified("files")
        .await
        .unwrap()
        .expect("verified run");
    assert_eq!(manifest.run_id, report.run_id);

    // Restore the run, one restorer per component, and compare byte for byte.
    let restore_dir = tmp.path().join("restored");
    std::fs::create_dir_all(&restore_dir).unwrap();
    let mut restore = Restore::builder()
        .sink(sink.clone())
        .keyring(keyring.clone());
    for component in ["files", "single", "cmd"] {
        restore = restore.restorer(FileRestorer::new(component, restore_dir.join(component)));
    }
    let restore = restore.build().unwrap();
    let plan = restore.plan(&manifest).await.unwrap();
    assert_eq!(plan.components.len(), 3, "{}", plan.table());
    assert!(plan.not_restored.is_empty(), "{}", plan.table());
    restore.apply(&plan).await.unwrap();
    assert_eq!(
        std::fs::read(restore_dir.join("files/big.txt")).unwrap(),
        big
    );
    assert_eq!(
        std::fs::read(restore_dir.join("files/nested/a.json")).unwrap(),
        br#"{"tenant":"acme","caf\xc3\xa9":true}"#
    );
    assert_eq!(
        std::fs::read(restore_dir.join("files/nested/deeper/empty")).unwrap(),
        b""
    );
    assert_eq!(std::fs::read(restore_dir.join("single")).unwrap(), single);
    let expected: String = (1..=200000).map(|i| format!("{i}\n")).collect();
    assert_eq!(
        std::fs::read_to_string(restore_dir.join("cmd")).unwrap(),
        expected
    );

    // Without the key, the plan refuses clearly, naming the artifact and the recipient.
    let a = &manifest.artifacts[0];
    let err = restore_component(
        sink.clone(),
        &manifest,
        &Keyring::new(),
        FileRestorer::new(a.component.clone(), tmp.path().join("nokey")),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.operation(), Some("plan restore"));
    assert_eq!(err.artifact(), Some(a.key.as_str()));
    assert!(err.hint().unwrap().contains("identity"), "{err:?}");
    assert!(!tmp.path().join("nokey").exists());
}

#[tokio::test]
async fn flipped_byte_makes_the_verifier_fail_naming_the_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let pipeline = Pipeline::builder()
        .source(CommandSource::new(
            "cmd",
            "out.txt",
            CommandSpec::new("seq").args(["1", "50000"]),
        ))
        .sink(sink.clone())
        .compression(ZstdCodec::default())
        .verifier(ChecksumVerifier::new())
        .build()
        .unwrap();
    let report = pipeline.run().await.unwrap().into_result().unwrap();
    let artifact = report.manifest.artifacts[0].clone();
    let catalog = Catalog::new(sink.clone());
    // Verified by the run itself: dated by its end; then by a later verification: its time.
    let listed = catalog.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(listed[0].verified_at, Some(report.manifest.finished_at));
    let again = catalog
        .verify_run(&report.run_id, &[ChecksumVerifier::new()], &Keyring::new())
        .await
        .unwrap();
    assert!(again.ok);
    let listed = catalog.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(listed[0].verified_at, Some(again.at));

    let path = tmp.path().join("backups").join(artifact.key.as_str());
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    for verifier in [ChecksumVerifier::new(), ChecksumVerifier::deep()] {
        let v = catalog
            .verify_run(&report.run_id, &[verifier], &Keyring::new())
            .await
            .unwrap();
        assert!(!v.ok);
        let (key, record) = &v.results[0];
        assert_eq!(key, &artifact.key);
        assert!(!record.ok);
        assert!(
            record.detail.contains(artifact.key.as_str()),
            "{}",
            record.detail
        );
    }
    // The failed re-verification demotes the run: it is no longer the latest verified, and
    // has no verification time (incremental re-verification must not skip it).
    assert!(catalog.latest_verified("cmd").await.unwrap().is_none());
    let listed = catalog.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(listed[0].verified_at, None);

    // Restore refuses the damaged bytes.
    let err = restore_component(
        sink.clone(),
        &report.manifest,
        &Keyring::new(),
        FileRestorer::new("cmd", tmp.path().join("out.txt")),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(!tmp.path().join("out.txt").exists());
}

#[tokio::test]
async fn failing_command_produces_no_complete_run_and_leaves_previous_run_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let good = Pipeline::builder()
        .source(CommandSource::new(
            "db",
            "dump.txt",
            CommandSpec::new("seq").args(["1", "1000"]),
        ))
        .sink(sink.clone())
        .build()
        .unwrap();
    let first = good.run().await.unwrap().into_result().unwrap();
    let before = visible_files(&tmp.path().join("backups"));

    let bad = Pipeline::builder()
        .source(CommandSource::new(
            "db",
            "dump.txt",
            CommandSpec::new("sh").args([
                "-c",
                "seq 1 100000; echo 'connection to server lost' >&2; exit 3",
            ]),
        ))
        .source(CommandSource::new(
            "other",
            "ok.txt",
            CommandSpec::new("echo").arg("fine"),
        ))
        .sink(sink.clone())
        .build()
        .unwrap();
    let second = bad.run().await.unwrap();
    assert_eq!(second.status, RunStatus::Partial);
    let failure = &second.manifest.failures[0];
    assert_eq!(failure.component, "db");
    assert!(
        failure.error.contains("exited with code 3"),
        "{}",
        failure.error
    );
    assert!(
        failure.error.contains("connection to server lost"),
        "{}",
        failure.error
    );
    let err = second.clone().into_result().unwrap_err();
    assert!(err.to_string().contains("partial"), "{err}");

    // No manifest for the failed run; the dump of the failed artifact is not visible.
    let catalog = Catalog::new(sink.clone());
    let complete = catalog.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(complete.len(), 1);
    assert_eq!(complete[0].run_id, first.run_id);
    assert!(!sink.exists(&second.run_id.manifest_key()).await.unwrap());
    let failed_dump = ObjectKey::new(format!("{}/db/dump.txt", second.run_id.prefix())).unwrap();
    assert!(!sink.exists(&failed_dump).await.unwrap());
    let incomplete = catalog.incomplete_runs().await.unwrap();
    assert_eq!(incomplete.len(), 1);
    assert_eq!(incomplete[0].status, RunStatus::Partial);

    // The previous run's files are all still there, byte for byte.
    let after = visible_files(&tmp.path().join("backups"));
    for f in &before {
        assert!(after.contains(f), "{f} vanished");
    }
    let m = catalog.read_manifest(&first.run_id).await.unwrap();
    assert_eq!(m, first.manifest);
    let v = catalog
        .verify_run(&first.run_id, &[ChecksumVerifier::deep()], &Keyring::new())
        .await
        .unwrap();
    assert!(v.ok);
}

#[tokio::test]
async fn cancelling_mid_write_leaves_no_manifest_and_no_partial_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let marker = tmp.path().join("child.pid");
    // Writes a lot, slowly, and records its pid so we can check it was killed.
    let script = format!(
        "echo $$ > {}; i=0; while [ $i -lt 100000 ]; do head -c 65536 /dev/zero; sleep 0.01; i=$((i+1)); done",
        marker.display()
    );
    let cancel = CancellationToken::new();
    let pipeline = Pipeline::builder()
        .source(CommandSource::new(
            "slow",
            "big.bin",
            CommandSpec::new("sh").args(["-c", &script]),
        ))
        .sink(sink.clone())
        .cancel(cancel.clone())
        .build()
        .unwrap();
    let run = tokio::spawn(async move { pipeline.run().await });
    // Wait until bytes are flowing into the sink.
    let backups = tmp.path().join("backups");
    let mut waited = 0;
    while !marker.exists() || visible_or_hidden_bytes(&backups) < 200_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        assert!(waited < 500, "the command never started writing");
    }
    cancel.cancel();
    let err = run.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);

    // No manifest, no visible artifact, no leftover temp file.
    assert!(
        visible_files(&backups).is_empty(),
        "{:?}",
        visible_files(&backups)
    );
    let catalog = Catalog::new(sink.clone());
    assert!(catalog.list_all().await.unwrap().is_empty());

    // The child was killed.
    let pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.is_empty() || status.contains("State:\tZ") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "child {pid} still running after cancellation");
}

fn visible_or_hidden_bytes(dir: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return 0;
        };
        rd.flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    e.metadata().map(|m| m.len()).unwrap_or(0)
                }
            })
            .sum()
    }
    walk(dir)
}

#[tokio::test]
async fn dropping_the_run_future_mid_write_also_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let pipeline = Pipeline::builder()
        .source(CommandSource::new(
            "slow",
            "big.bin",
            CommandSpec::new("sh").args([
                "-c",
                "while true; do head -c 65536 /dev/zero; sleep 0.01; done",
            ]),
        ))
        .sink(sink.clone())
        .build()
        .unwrap();
    let r = tokio::time::timeout(Duration::from_millis(700), pipeline.run()).await;
    assert!(r.is_err(), "the endless run cannot finish");
    assert!(visible_files(&tmp.path().join("backups")).is_empty());
}

#[tokio::test]
async fn secrets_are_refused_without_encryption_unless_explicitly_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("secret.txt"), b"password=hunter2").unwrap();
    let sink = local_sink(tmp.path());
    let source = Arc::new(
        FileSource::new("vault", tmp.path().join("secret.txt"), "kv.json").sensitive(true),
    );
    let refused = Pipeline::builder()
        .source(source.clone())
        .sink(sink.clone())
        .build()
        .unwrap();
    let report = refused.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.manifest.failures[0].error.contains("encryption"));

    let allowed = Pipeline::builder()
        .source(source)
        .sink(sink.clone())
        .store_secrets_unencrypted(true)
        .build()
        .unwrap();
    assert!(allowed.run().await.unwrap().is_complete());
}

#[test]
fn keys_with_dot_dot_are_refused() {
    for bad in ["../etc/passwd", "runs/../../x", "/abs/path", "runs/./x"] {
        let err = ObjectKey::new(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        assert!(err.to_string().contains("invalid storage key"), "{err}");
    }
}

#[tokio::test]
async fn artifact_names_that_escape_are_refused_per_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let pipeline = Pipeline::builder()
        .source(CommandSource::new(
            "evil",
            "../../escape.txt",
            CommandSpec::new("echo").arg("x"),
        ))
        .sink(sink)
        .build()
        .unwrap();
    let report = pipeline.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.manifest.failures[0]
        .error
        .contains("invalid storage key"));
    assert!(!tmp.path().join("escape.txt").exists());
}

/// Opens the stored file, lets "retention in another process" delete it, then reads it to
/// the end through the open descriptor and checks its digest: it passes, as the checks did
/// when retention removed a running run's artifact.
#[derive(Debug)]
struct ReadsADeletedFile {
    root: std::path::PathBuf,
}

#[async_trait::async_trait]
impl stoa_backup::core::Verifier for ReadsADeletedFile {
    fn name(&self) -> &str {
        "reads-a-deleted-file"
    }
    fn applies_to(&self, _: &stoa_backup::core::ArtifactRecord) -> bool {
        true
    }
    async fn verify(
        &self,
        ctx: &stoa_backup::core::VerifyContext<'_>,
    ) -> stoa_backup::core::Result<stoa_backup::core::manifest::VerificationRecord> {
        let a = ctx.artifact;
        let open = ctx.open_stored().await?;
        std::fs::remove_file(self.root.join(a.key.as_str())).unwrap();
        let checked = stoa_backup::core::verify::check_digest(
            open,
            &a.stored_sha256,
            a.stored_size,
            a.key.as_str(),
        );
        stoa_backup::core::stream::collect(checked).await?;
        Ok(stoa_backup::core::manifest::VerificationRecord::now(
            self.name(),
            true,
            "every byte read and matched",
        ))
    }
}

#[tokio::test]
async fn an_artifact_deleted_while_its_check_reads_it_leaves_the_run_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let report = Pipeline::builder()
        .source(CommandSource::new(
            "db",
            "dump.txt",
            CommandSpec::new("seq").args(["1", "1000"]),
        ))
        .sink(sink.clone())
        .verifier(ReadsADeletedFile {
            root: tmp.path().join("backups"),
        })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    // The check passed, but the data is gone: no manifest, and the catalog says so.
    assert!(report.manifest.artifacts.is_empty());
    assert!(!sink.exists(&report.run_id.manifest_key()).await.unwrap());
    let catalog = Catalog::new(sink.clone());
    assert!(catalog
        .list_runs(&RunFilter::default())
        .await
        .unwrap()
        .is_empty());
    let key = format!("{}/db/dump.txt", report.run_id.prefix());
    let err = report.into_result().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert_eq!(err.artifact(), Some(key.as_str()), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test]
async fn a_run_whose_retention_fails_is_stored_but_not_a_plain_success() {
    use stoa_backup_test_support::faulty::{FaultySink, Trigger};
    let tmp = tempfile::tempdir().unwrap();
    let sink = Arc::new(FaultySink::new(local_sink(tmp.path())));
    let pipeline = Pipeline::builder()
        .source(CommandSource::new(
            "db",
            "dump.txt",
            CommandSpec::new("seq").args(["1", "1000"]),
        ))
        .sink(sink.clone())
        .verifier(ChecksumVerifier::new())
        // Keeps only the newest verified run, so the second run forgets the first.
        .retention(stoa_backup::core::KeepRules::new())
        .apply_retention(true)
        .build()
        .unwrap();
    let first = pipeline.run().await.unwrap().into_result().unwrap();
    sink.set_delete_fault(Trigger::Always);
    let second = pipeline.run().await.unwrap();

    assert!(second.is_complete());
    assert!(!second.is_success());
    assert!(second.removed_runs.is_empty());
    let catalog = Catalog::new(sink.clone());
    let complete = catalog.list_runs(&RunFilter::default()).await.unwrap();
    let ids: Vec<_> = complete.iter().map(|r| r.run_id.clone()).collect();
    // Both backups are there: the new one, and the old one retention could not delete.
    assert_eq!(ids, [second.run_id.clone(), first.run_id.clone()]);

    let run_id = second.run_id.clone();
    let err = second.into_result().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert_eq!(err.operation(), Some("apply retention"), "{err}");
    assert_eq!(err.context_value("run"), Some(run_id.as_str()), "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("run {run_id} is stored")), "{text}");
    assert!(
        text.contains(stoa_backup_test_support::faulty::INJECTED),
        "{text}"
    );
}

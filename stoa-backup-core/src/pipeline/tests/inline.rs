//! Inline verification: checks that read a copy of the plain bytes while they are stored,
//! the digest check of the stored bytes that follows them, and the timings of each phase.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::support::{Fixed, Hooked};
use crate::codec::ZstdCodec;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{ArtifactRecord, RunStatus, VerificationRecord, VerifyMethod};
use crate::observer::{Event, Observer};
use crate::pipeline::Pipeline;
use crate::sink::{MemorySink, Sink};
use crate::verify::{InlineContext, Verifier, VerifyContext};

const BYTES: &[u8] = b"the plain bytes of an artifact, as the source produced them";

/// Checks inline that the plain bytes are [`BYTES`] (or fails when `wrong`); counts how
/// often each kind of check ran.
#[derive(Debug, Default)]
struct Expects {
    wrong: bool,
    inline_runs: AtomicUsize,
    read_back_runs: AtomicUsize,
    /// The stored record's plain digest, as the inline check saw it.
    seen_sha256: Mutex<Option<String>>,
}

#[async_trait]
impl Verifier for Expects {
    fn name(&self) -> &str {
        "expects"
    }
    fn applies_to(&self, artifact: &ArtifactRecord) -> bool {
        artifact.component == "config"
    }
    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
        self.read_back_runs.fetch_add(1, Ordering::SeqCst);
        let plain = crate::stream::collect(ctx.open_plain().await?).await?;
        Ok(VerificationRecord::now(
            self.name(),
            plain == BYTES,
            "read back",
        ))
    }
    fn inline(&self) -> bool {
        true
    }
    async fn verify_inline(&self, ctx: InlineContext) -> Result<VerificationRecord> {
        self.inline_runs.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            ctx.planned.plain_size, 0,
            "sizes are unknown before the store"
        );
        let plain = crate::stream::collect(ctx.plain).await?;
        let stored = ctx.stored.get().await?;
        *self.seen_sha256.lock().unwrap() = Some(stored.plain_sha256.clone());
        let ok = plain == BYTES && !self.wrong;
        Ok(VerificationRecord::now(
            self.name(),
            ok,
            format!("{} plain bytes", plain.len()),
        ))
    }
}

/// Records the timings events.
#[derive(Debug, Default)]
struct Timed(Mutex<Vec<(String, u64)>>);

impl Observer for Timed {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::ArtifactTimings { name, timings, .. } = event {
            self.0
                .lock()
                .unwrap()
                .push((name.to_string(), timings.total_ms));
        }
    }
}

fn pipeline(sink: impl Sink + 'static, verifier: Arc<Expects>, inline: bool) -> Pipeline {
    Pipeline::builder()
        .source(Fixed::one("config", "config.yaml", BYTES))
        .sink(sink)
        .compression(ZstdCodec::default())
        .verifier(verifier)
        .inline_verification(inline)
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_inline_check_reads_the_plain_bytes_once_and_the_stored_bytes_are_read_back() {
    let verifier = Arc::new(Expects::default());
    let observer = Arc::new(Timed::default());
    let sink = MemorySink::new();
    let report = Pipeline::builder()
        .source(Fixed::one("config", "config.yaml", BYTES))
        .sink(sink.clone())
        .compression(ZstdCodec::default())
        .verifier(verifier.clone())
        .observer(observer.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(
        report.status,
        RunStatus::Complete,
        "{:?}",
        report.manifest.failures
    );
    assert_eq!(verifier.inline_runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        verifier.read_back_runs.load(Ordering::SeqCst),
        0,
        "no second read of the plain bytes"
    );
    let a = &report.manifest.artifacts[0];
    assert_eq!(
        verifier.seen_sha256.lock().unwrap().as_deref(),
        Some(a.plain_sha256.as_str())
    );
    let how: Vec<(&str, Option<VerifyMethod>)> = a
        .verification
        .iter()
        .map(|v| (v.verifier.as_str(), v.method))
        .collect();
    assert_eq!(
        how,
        [
            ("expects", Some(VerifyMethod::Inline)),
            ("checksum", Some(VerifyMethod::ReadBack))
        ]
    );
    assert!(a.is_verified());
    let t = a.timings.expect("timings recorded");
    assert!(t.dump_ms <= t.store_ms && t.store_ms <= t.total_ms, "{t:?}");
    assert_eq!(
        observer.0.lock().unwrap().as_slice(),
        [("config.yaml".to_string(), t.total_ms)]
    );
    // The manifest as stored says the same.
    let stored = crate::catalog::Catalog::new(sink)
        .read_manifest(&report.run_id)
        .await
        .unwrap();
    assert_eq!(
        stored.artifacts[0].verification[0].method,
        Some(VerifyMethod::Inline)
    );
    assert_eq!(stored.artifacts[0].timings, Some(t));
}

#[tokio::test]
async fn a_failed_inline_check_fails_the_run() {
    let verifier = Arc::new(Expects {
        wrong: true,
        ..Expects::default()
    });
    let report = pipeline(MemorySink::new(), verifier, true)
        .run()
        .await
        .unwrap();
    assert_ne!(report.status, RunStatus::Complete);
    let failure = &report.manifest.failures[0];
    assert_eq!(failure.operation, "verify");
    assert!(
        failure.error.contains("verifier 'expects' failed"),
        "{}",
        failure.error
    );
}

#[tokio::test]
async fn stored_bytes_that_differ_from_what_was_sent_fail_the_run_after_an_inline_check() {
    // The sink keeps one byte flipped: the inline check saw good bytes, the read-back sees
    // the damage.
    let sink = Hooked::new(|inner, key, stream| async move {
        let mut bytes = crate::stream::collect(stream).await?;
        bytes[0] ^= 0xff;
        let size = bytes.len() as u64;
        inner.put(&key, crate::stream::once(bytes)).await?;
        Ok(crate::sink::PutResult::new(size))
    });
    let report = pipeline(sink, Arc::new(Expects::default()), true)
        .run()
        .await
        .unwrap();
    assert_ne!(report.status, RunStatus::Complete);
    let a = &report.manifest.artifacts[0];
    let checksum = a
        .verification
        .iter()
        .find(|v| v.verifier == "checksum")
        .unwrap();
    assert!(!checksum.ok, "{checksum:?}");
    assert!(
        report.manifest.failures[0]
            .error
            .contains("does not match the manifest"),
        "{:?}",
        report.manifest.failures
    );
}

#[tokio::test]
async fn a_store_that_checked_its_writes_is_not_read_back() {
    let gets = Arc::new(AtomicUsize::new(0));
    let sink = Hooked::new(|inner, key, stream| async move {
        let put = inner.put(&key, stream).await?;
        Ok(put.store_checked("the test store compared every byte"))
    });
    let counting = CountingGets {
        inner: sink,
        gets: gets.clone(),
    };
    let report = pipeline(counting, Arc::new(Expects::default()), true)
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Complete);
    let checksum = &report.manifest.artifacts[0].verification[1];
    assert_eq!(checksum.method, Some(VerifyMethod::StoreChecksum));
    assert!(
        checksum
            .detail
            .contains("the test store compared every byte"),
        "{}",
        checksum.detail
    );
    assert_eq!(gets.load(Ordering::SeqCst), 0, "nothing was read back");
}

#[tokio::test]
async fn without_inline_verification_every_check_reads_the_artifact_back() {
    let verifier = Arc::new(Expects::default());
    let report = pipeline(MemorySink::new(), verifier.clone(), false)
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(verifier.inline_runs.load(Ordering::SeqCst), 0);
    assert_eq!(verifier.read_back_runs.load(Ordering::SeqCst), 1);
    let v = &report.manifest.artifacts[0].verification;
    assert_eq!(
        v.len(),
        1,
        "no extra digest check: the read-back read the stored bytes"
    );
    assert_eq!(v[0].method, Some(VerifyMethod::ReadBack));
}

#[tokio::test]
async fn an_inline_check_that_cannot_run_fails_the_artifact_naming_it() {
    #[derive(Debug)]
    struct Broken;
    #[async_trait]
    impl Verifier for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn applies_to(&self, _: &ArtifactRecord) -> bool {
            true
        }
        async fn verify(&self, _: &VerifyContext<'_>) -> Result<VerificationRecord> {
            unreachable!("checked inline")
        }
        fn inline(&self) -> bool {
            true
        }
        async fn verify_inline(&self, ctx: InlineContext) -> Result<VerificationRecord> {
            drop(ctx.plain);
            Err(Error::new(
                ErrorKind::NotFound,
                "pg_restore is not installed",
            ))
        }
    }
    let report = Pipeline::builder()
        .source(Fixed::one("config", "config.yaml", BYTES))
        .sink(MemorySink::new())
        .verifier(Broken)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_ne!(report.status, RunStatus::Complete);
    let f = &report.manifest.failures[0];
    assert_eq!(
        (f.operation.as_str(), f.kind),
        ("verify", ErrorKind::NotFound)
    );
    assert!(
        f.error.contains("pg_restore is not installed"),
        "{}",
        f.error
    );
}

/// Counts `get`s, forwarding everything to the inner sink.
#[derive(Debug)]
struct CountingGets<S> {
    inner: S,
    gets: Arc<AtomicUsize>,
}

#[async_trait]
impl<S: Sink> Sink for CountingGets<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn preflight(&self) -> Result<()> {
        self.inner.preflight().await
    }
    async fn put(
        &self,
        key: &crate::key::ObjectKey,
        stream: crate::stream::ByteStream,
    ) -> Result<crate::sink::PutResult> {
        self.inner.put(key, stream).await
    }
    async fn get(&self, key: &crate::key::ObjectKey) -> Result<crate::stream::ByteStream> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<crate::sink::ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &crate::key::ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }
}

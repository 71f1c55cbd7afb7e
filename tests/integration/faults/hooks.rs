//! Where the child backup stops to be killed: an observer for the points the pipeline
//! reports as events, and a sink wrapper for the points inside a stream.
//!
//! At its point, a hook prints its marker on stdout (the parent waits for it) and then never
//! returns: the observer blocks its thread, a paused stream never yields again.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use stoa_backup::core::manifest::MANIFEST_FILE;
use stoa_backup::core::sink::{ObjectMeta, PutResult, SinkCapabilities};
use stoa_backup::core::{ByteStream, Event, ObjectKey, Observer, Result, Sink};
use stoa_backup_test_support::child::{block_thread_forever, reached};

/// Bytes of the (compressed) dump stream the sink takes before the "during the dump" pause.
/// Far less than the stream, and than what the pipeline reads ahead of the sink: pg_dump is
/// still writing (blocked on its full pipe) when the child is killed.
pub(super) const DUMP_PAUSE_BYTES: u64 = 64 * 1024;

/// Bytes of `manifest.json` the sink takes before the "during the manifest write" pause
/// (a manifest with pg_dump's facts is several kB).
pub(super) const MANIFEST_PAUSE_BYTES: u64 = 512;

/// Bytes of the stored dump the archive verifier reads before the "during verification" pause.
pub(super) const VERIFY_PAUSE_BYTES: u64 = 64 * 1024;

/// The marker the child prints when its run has started; its value is the run id.
pub(super) const RUN_MARKER: &str = "run";

/// Where the child backup is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FaultPoint {
    /// pg_dump is running and the sink has taken [`DUMP_PAUSE_BYTES`] of the dump's stream.
    DuringDump,
    /// pg_dump is running, waiting for a table lock the parent holds: it has written
    /// nothing, and the sink's put of the dump has started.
    DumpWaitingOnLock,
    /// The dump is stored (renamed into place, `ArtifactDone`); nothing verified yet.
    AfterArtifactRename,
    /// The checksum verifier has passed and the pg_restore archive verifier (its pg_restore
    /// processes running) has read [`VERIFY_PAUSE_BYTES`] of the stored dump.
    DuringVerification,
    /// The sink has taken [`MANIFEST_PAUSE_BYTES`] of `manifest.json`.
    DuringManifestWrite,
}

impl FaultPoint {
    pub(super) const ALL: [FaultPoint; 5] = [
        FaultPoint::DuringDump,
        FaultPoint::DumpWaitingOnLock,
        FaultPoint::AfterArtifactRename,
        FaultPoint::DuringVerification,
        FaultPoint::DuringManifestWrite,
    ];

    /// The point's name: its marker and its name in the child's parameters.
    pub(super) fn name(self) -> &'static str {
        match self {
            FaultPoint::DuringDump => "during-dump",
            FaultPoint::DumpWaitingOnLock => "dump-waiting-on-lock",
            FaultPoint::AfterArtifactRename => "after-artifact-rename",
            FaultPoint::DuringVerification => "during-verification",
            FaultPoint::DuringManifestWrite => "during-manifest-write",
        }
    }

    pub(super) fn parse(name: &str) -> Option<FaultPoint> {
        FaultPoint::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn is_dump(key: &ObjectKey) -> bool {
    key.file_name().ends_with(".dump")
}

/// The hooks of one child run, shared by its observer and its sink.
#[derive(Debug)]
pub(super) struct Hooks {
    point: FaultPoint,
    /// Set once the checksum verifier passed: the next read of the dump is the archive
    /// verifier's.
    checksum_verified: AtomicBool,
}

impl Hooks {
    pub(super) fn new(point: FaultPoint) -> Arc<Hooks> {
        Arc::new(Hooks {
            point,
            checksum_verified: AtomicBool::new(false),
        })
    }
}

/// The observer side: prints the run id, stops after the dump's `ArtifactDone`, and notes
/// when the checksum verifier is through.
#[derive(Debug)]
pub(super) struct HookObserver(pub(super) Arc<Hooks>);

impl Observer for HookObserver {
    fn on_event(&self, event: &Event<'_>) {
        match event {
            Event::RunStarted { run_id, .. } => reached(RUN_MARKER, Some(run_id.as_str())),
            Event::ArtifactDone { name, .. }
                if self.0.point == FaultPoint::AfterArtifactRename && name.ends_with(".dump") =>
            {
                reached(self.0.point.name(), Some(name));
                block_thread_forever()
            }
            Event::Verified { name, record, .. }
                if record.verifier == "checksum" && name.ends_with(".dump") =>
            {
                assert!(record.ok, "the checksum verifier failed: {record:?}");
                self.0.checksum_verified.store(true, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// The sink side: the real sink, with the streams of the dump's put, the manifest's put and
/// the archive verifier's read paused at the hook's point.
#[derive(Debug)]
pub(super) struct HookSink {
    pub(super) inner: Arc<dyn Sink>,
    pub(super) hooks: Arc<Hooks>,
}

/// Passes the first `limit` bytes of `stream` on (all of it, if shorter), then prints the
/// marker of `point` with the number of bytes passed and never yields again.
fn pause_after(stream: ByteStream, limit: u64, point: FaultPoint) -> ByteStream {
    struct St {
        inner: ByteStream,
        passed: u64,
    }
    let st = St {
        inner: stream,
        passed: 0,
    };
    Box::pin(futures::stream::unfold(st, move |mut st| async move {
        if st.passed < limit {
            match st.inner.next().await {
                Some(Ok(chunk)) => {
                    let room = (limit - st.passed) as usize;
                    let chunk: Bytes = if chunk.len() > room {
                        chunk.slice(..room)
                    } else {
                        chunk
                    };
                    st.passed += chunk.len() as u64;
                    return Some((Ok(chunk), st));
                }
                Some(Err(e)) => return Some((Err(e), st)),
                None => {}
            }
        }
        reached(point.name(), Some(&st.passed.to_string()));
        futures::future::pending().await
    }))
}

#[async_trait]
impl Sink for HookSink {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }

    async fn preflight(&self) -> Result<()> {
        self.inner.preflight().await
    }

    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        let point = self.hooks.point;
        let stream = match point {
            FaultPoint::DuringDump if is_dump(key) => pause_after(stream, DUMP_PAUSE_BYTES, point),
            FaultPoint::DumpWaitingOnLock if is_dump(key) => pause_after(stream, 0, point),
            FaultPoint::DuringManifestWrite if key.file_name() == MANIFEST_FILE => {
                pause_after(stream, MANIFEST_PAUSE_BYTES, point)
            }
            _ => stream,
        };
        self.inner.put(key, stream).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let stream = self.inner.get(key).await?;
        let point = self.hooks.point;
        if point == FaultPoint::DuringVerification
            && is_dump(key)
            && self.hooks.checksum_verified.load(Ordering::SeqCst)
        {
            return Ok(pause_after(stream, VERIFY_PAUSE_BYTES, point));
        }
        Ok(stream)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }
}

//! The S3 sink against real S3 servers: s3s + s3s-fs in-process (always) and moto's
//! standalone server when `STOA_TEST_S3_ENDPOINT` names one (`scripts/moto-server.sh`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::Either;
use futures::StreamExt;
use stoa_backup_core::{ByteStream, Error, ErrorKind, ObjectKey, Sink, SinkExt};
use stoa_backup_storage::{S3Credentials, S3Encryption, S3Retry, S3Sink, S3SinkBuilder};
use stoa_backup_test_support::conformance::{
    pseudo_random_stream, run_sink_conformance_with_prefix,
};
use stoa_backup_test_support::s3::{self as s3t, FaultScope, S3Target};

mod checksums;
mod etag;
mod ranges;

const MIB: usize = 1024 * 1024;

fn builder(t: &S3Target) -> S3SinkBuilder {
    S3Sink::builder(&t.bucket)
        .endpoint(&t.endpoint)
        .region(&t.region)
        .allow_http(true)
        .credentials(S3Credentials::new(&t.access_key, &t.secret_key))
        .retry(S3Retry {
            max_retries: 5,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            retry_timeout: Duration::from_secs(30),
        })
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

/// `len` bytes in 256 KiB chunks sliced from one random 1 MiB block (cheap to produce).
fn block_stream(block: Bytes, len: usize) -> ByteStream {
    const CHUNK: usize = 256 * 1024;
    let s = futures::stream::iter((0..len.div_ceil(CHUNK)).map(move |i| {
        let start = i * CHUNK;
        let end = (start + CHUNK).min(len);
        let off = start % block.len();
        Ok(block.slice(off..off + (end - start)))
    }));
    Box::pin(s)
}

fn random_block() -> Bytes {
    Bytes::from(stoa_backup_test_support::conformance::pseudo_random_bytes(
        42, MIB,
    ))
}

/// Reads `key` back and compares it with the block stream's bytes, chunk by chunk.
async fn assert_block_content(sink: &S3Sink, k: &ObjectKey, block: &Bytes, len: usize) {
    let mut s = sink.get(k).await.unwrap();
    let mut pos = 0usize;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.unwrap();
        let mut c = &chunk[..];
        while !c.is_empty() {
            let off = pos % block.len();
            let n = c.len().min(block.len() - off);
            assert!(
                c[..n] == block[off..off + n],
                "content differs at byte {pos}"
            );
            c = &c[n..];
            pos += n;
        }
    }
    assert_eq!(pos, len, "read back {pos} bytes, expected {len}");
}

/// A stream of `head` bytes, then an error from the source.
fn failing_stream(head: u64) -> ByteStream {
    Box::pin(
        pseudo_random_stream(9, head).chain(futures::stream::iter([Err(Error::source_failed(
            "the source died mid-stream",
        ))])),
    )
}

async fn wait_no_pending_uploads(t: &S3Target, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = t.pending_uploads().await;
        if pending.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{} ({what}): multipart uploads left pending: {pending:?}",
                t.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sink_passes_the_conformance_suite() {
    for t in s3t::targets().await {
        // With a prefix, and with none (the bucket's root).
        let sink = builder(&t).prefix("stoa/conformance").build().unwrap();
        run_sink_conformance_with_prefix(&sink, "suite").await;
        let sink = builder(&t).build().unwrap();
        run_sink_conformance_with_prefix(&sink, "root-suite").await;
        wait_no_pending_uploads(&t, "after the conformance suite").await;
        eprintln!("conformance passed on {}", t.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_artifact_goes_multipart_with_bounded_memory() {
    let t = s3t::s3s_fs_target().await;
    let server = t.server().unwrap();
    let sink = builder(&t)
        .prefix("big")
        .part_size(5 * MIB)
        .max_parts_in_flight(3)
        .build()
        .unwrap();
    let metrics = sink.metrics();
    let cap = sink.max_buffered_bytes();
    assert_eq!(cap, 20 * MIB as u64);
    let before = server.requests();

    let len = 200 * MIB;
    let block = random_block();
    let k = key("runs/r1/postgres/big.dump");
    let r = sink
        .put(&k, block_stream(block.clone(), len))
        .await
        .unwrap();
    assert_eq!(r.size, len as u64);

    // The server's view: one multipart upload of 40 parts, completed; no single put.
    let after = server.requests();
    assert_eq!(after.create_multipart - before.create_multipart, 1);
    assert_eq!(after.upload_part - before.upload_part, 40);
    assert_eq!(after.complete_multipart - before.complete_multipart, 1);
    assert_eq!(after.put_object - before.put_object, 0);
    // The sink's view agrees, and memory stayed bounded.
    assert_eq!(metrics.parts_uploaded(), 40);
    assert_eq!(metrics.multipart_completed(), 1);
    let peak = metrics.peak_buffered_bytes();
    let chunk = 256 * 1024;
    eprintln!("peak buffered: {peak} bytes; cap {cap} (+ one {chunk}-byte chunk)");
    assert!(
        peak <= cap + chunk,
        "peak in-flight buffered bytes {peak} above the cap {cap} (+ one chunk)"
    );
    assert!(
        peak >= 5 * MIB as u64,
        "the gauge did not see a whole part: {peak}"
    );
    assert_eq!(
        metrics.buffered_bytes(),
        0,
        "bytes still counted after the put"
    );

    let listed = sink.list("runs/r1").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, len as u64);
    assert_block_content(&sink, &k, &block, len).await;
    assert!(t.pending_uploads().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upload_leaves_no_object_and_no_pending_upload() {
    for t in s3t::targets().await {
        let sink = builder(&t)
            .prefix("killed")
            .part_size(5 * MIB)
            .max_parts_in_flight(2)
            .build()
            .unwrap();
        let metrics = sink.metrics();

        // 1. The stream fails after three parts were sent: the error is the source's, the
        //    upload is aborted before put returns.
        let k = key("runs/r1/db/dump");
        let err = sink
            .put(&k, failing_stream(16 * MIB as u64))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Source, "{err}");
        assert_eq!(err.artifact(), Some(k.as_str()));
        assert_eq!(metrics.multipart_aborted(), 1);
        assert!(
            metrics.parts_uploaded() >= 1,
            "no part was uploaded before the failure"
        );
        assert!(
            !sink.exists(&k).await.unwrap(),
            "{}: a partial object is visible",
            t.name()
        );
        assert!(sink.list("runs/r1").await.unwrap().is_empty());
        let pending = t.pending_uploads().await;
        assert!(
            pending.is_empty(),
            "{}: pending uploads after a failed stream: {pending:?}",
            t.name()
        );
        if let Some(server) = t.server() {
            assert_eq!(server.requests().abort_multipart, 1);
        }

        // 2. The put future is dropped mid-upload (a cancelled run).
        let k = key("runs/r2/db/dump");
        let parts_before = metrics.parts_uploaded();
        let consumed = Arc::new(AtomicUsize::new(0));
        let c = consumed.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let head = pseudo_random_stream(11, 12 * MIB as u64).inspect(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let tail = futures::stream::once(async move {
            let _ = tx.send(());
            futures::future::pending::<stoa_backup_core::Result<Bytes>>().await
        });
        let s: ByteStream = Box::pin(head.chain(tail));
        let put = sink.put(&k, s);
        match tokio::time::timeout(Duration::from_secs(60), futures::future::select(put, rx)).await
        {
            Ok(Either::Right((_, put))) => {
                // Let the first parts reach the server, then cancel.
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut put = put;
                while metrics.parts_uploaded() == parts_before && Instant::now() < deadline {
                    if let Ok(r) = tokio::time::timeout(Duration::from_millis(20), &mut put).await {
                        panic!("the put finished although its stream never ended: {r:?}");
                    }
                }
                assert!(
                    metrics.parts_uploaded() > parts_before,
                    "no part reached the server"
                );
                drop(put);
            }
            Ok(Either::Left((r, _))) => {
                panic!("the put finished although its stream never ended: {r:?}")
            }
            Err(_) => panic!("the put did not consume its stream within 60s"),
        }
        wait_no_pending_uploads(&t, "after a dropped put").await;
        assert!(
            !sink.exists(&k).await.unwrap(),
            "{}: a partial object is visible",
            t.name()
        );
        assert_eq!(metrics.multipart_aborted(), 2);
        assert_eq!(
            metrics.buffered_bytes(),
            0,
            "a dropped put still counts buffered bytes"
        );
        eprintln!("killed uploads cleaned up on {}", t.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_503s_are_retried() {
    let t = s3t::s3s_fs_target().await;
    let server = t.server().unwrap();
    let sink = builder(&t)
        .prefix("flaky")
        .part_size(5 * MIB)
        .build()
        .unwrap();
    // Every third request on an object fails with 503 SlowDown.
    server.faults().fail_every(3, 503, FaultScope::Objects);
    let block = random_block();
    let len = 23 * MIB + 17;
    let k = key("runs/r1/x/big");
    sink.put(&k, block_stream(block.clone(), len))
        .await
        .unwrap();
    let small = key("runs/r1/x/small");
    sink.put_bytes(&small, Bytes::from_static(b"tiny"))
        .await
        .unwrap();
    assert_eq!(sink.get_bytes(&small).await.unwrap(), b"tiny");
    assert_block_content(&sink, &k, &block, len).await;
    assert_eq!(sink.list("runs/r1").await.unwrap().len(), 2);
    sink.delete(&small).await.unwrap();
    let faults = server.requests().faults;
    assert!(faults >= 4, "only {faults} faults were injected");
    server.faults().clear();
    assert!(t.pending_uploads().await.is_empty());

    // Persistent 503s: retries are bounded and the error says retrying later may help.
    server.faults().fail_always(503, FaultScope::Objects);
    let sink = builder(&t)
        .retry(S3Retry {
            max_retries: 2,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            retry_timeout: Duration::from_secs(10),
        })
        .build()
        .unwrap();
    let started = Instant::now();
    let err = sink
        .put_bytes(&key("a/b"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.to_string().contains(&format!("s3://{}/a/b", t.bucket)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_403s_fail_clearly_without_the_secret() {
    let t = s3t::s3s_fs_target().await;
    // A wrong secret key: the server's signature check answers 403 to everything.
    let wrong_secret = "WRONG-secret-key-must-not-leak-7c2e";
    let sink = S3Sink::builder(&t.bucket)
        .endpoint(&t.endpoint)
        .region(&t.region)
        .allow_http(true)
        .prefix("denied")
        .credentials(S3Credentials::new(&t.access_key, wrong_secret))
        .build()
        .unwrap();
    let k = key("runs/r1/postgres/db.dump");
    for big in [false, true] {
        let s = if big {
            pseudo_random_stream(1, 6 * MIB as u64)
        } else {
            stoa_backup_core::stream::once(Bytes::from_static(b"x"))
        };
        let err = sink.put(&k, s).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{text}");
        assert!(!err.is_retryable());
        assert!(
            text.contains(&t.bucket),
            "the error does not name the bucket: {text}"
        );
        assert!(
            text.contains("denied/runs/r1/postgres/db.dump"),
            "the error does not name the key: {text}"
        );
        assert!(
            !text.contains(wrong_secret),
            "the error leaks the secret: {text}"
        );
        assert!(err.hint().unwrap().contains("credentials"), "{text}");
    }
    let err = sink.preflight().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!format!("{err:?}").contains(wrong_secret));
    assert!(!format!("{sink:?}").contains(wrong_secret));

    // Injected 403s on a correctly signed client behave the same.
    let server = t.server().unwrap();
    let sink = builder(&t).build().unwrap();
    server.faults().fail_always(403, FaultScope::All);
    let err = sink.get(&k).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!format!("{err:?}").contains(s3t::TEST_SECRET_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_and_storage_class_headers_are_accepted() {
    for t in s3t::targets().await {
        let sink = builder(&t)
            .prefix("sse")
            .encryption(S3Encryption::S3Managed)
            .storage_class("STANDARD")
            .build()
            .unwrap();
        sink.preflight().await.unwrap();
        let k = key("a/small");
        sink.put_bytes(&k, Bytes::from_static(b"secret-ish"))
            .await
            .unwrap();
        assert_eq!(sink.get_bytes(&k).await.unwrap(), b"secret-ish");
        let big = key("a/big");
        let block = random_block();
        sink.put(&big, block_stream(block.clone(), 11 * MIB))
            .await
            .unwrap();
        assert_block_content(&sink, &big, &block, 11 * MIB).await;
    }
}

#[tokio::test]
async fn a_missing_bucket_fails_preflight_with_a_hint() {
    // s3s-fs creates missing buckets on put; moto (like S3) refuses.
    let Some(t) = s3t::external_target().await else {
        eprintln!("skipped: needs {} (moto)", s3t::S3_ENDPOINT_ENV);
        return;
    };
    let sink = S3Sink::builder("stoa-no-such-bucket")
        .endpoint(&t.endpoint)
        .region(&t.region)
        .allow_http(true)
        .credentials(S3Credentials::new(&t.access_key, &t.secret_key))
        .build()
        .unwrap();
    let err = sink.preflight().await.unwrap_err();
    assert!(err.to_string().contains("stoa-no-such-bucket"), "{err}");
    assert!(err.hint().is_some());
}

/// The keys of the bucket's pending multipart uploads, sorted, with the XML escapes that
/// `S3Target::pending_uploads` leaves in them undone.
async fn pending_keys(t: &S3Target) -> Vec<String> {
    let mut keys: Vec<String> = t
        .pending_uploads()
        .await
        .iter()
        .map(|k| {
            k.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect();
    keys.sort();
    keys
}

/// Starts a multipart put of `k` and abandons it once a part reached the server, the way a
/// killed process does: the put future is leaked, not dropped, so its abort never runs.
async fn abandon_multipart_put(sink: &S3Sink, k: &ObjectKey) {
    let metrics = sink.metrics();
    let parts_before = metrics.parts_uploaded();
    let s: ByteStream =
        Box::pin(pseudo_random_stream(5, 6 * MIB as u64).chain(futures::stream::pending()));
    let mut put = Box::pin(sink.put(k, s));
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics.parts_uploaded() == parts_before {
        assert!(Instant::now() < deadline, "no part reached the server");
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(20), &mut put).await {
            panic!("the put finished although its stream never ended: {r:?}");
        }
    }
    std::mem::forget(put);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_aborts_the_multipart_uploads_of_killed_puts_before_the_cutoff() {
    // s3s-fs has no ListMultipartUploads (see the next test): moto only.
    let Some(t) = s3t::external_target().await else {
        eprintln!("skipped: needs {} (moto)", s3t::S3_ENDPOINT_ENV);
        return;
    };
    let sink = builder(&t)
        .prefix("stoa/prod")
        .part_size(5 * MIB)
        .build()
        .unwrap();
    // Another sink on the same bucket under another prefix: its uploads are not ours.
    let other = builder(&t)
        .prefix("stoa/prod-eu")
        .part_size(5 * MIB)
        .build()
        .unwrap();
    abandon_multipart_put(&sink, &key("runs/r1/db/dump")).await;
    abandon_multipart_put(&sink, &key("runs/r1/kc/realm & <users>.json")).await;
    abandon_multipart_put(&other, &key("runs/r1/db/dump")).await;
    assert_eq!(
        pending_keys(&t).await,
        [
            "stoa/prod-eu/runs/r1/db/dump",
            "stoa/prod/runs/r1/db/dump",
            "stoa/prod/runs/r1/kc/realm & <users>.json",
        ]
    );

    // A cutoff before they started keeps them: they may be puts still running. (moto
    // reports every upload as started 2010-11-10T20:48:33Z, the example of the AWS
    // documentation, so the cutoff lies before that.)
    let before = "2001-01-01T00:00:00Z".parse().unwrap();
    let report = sink.cleanup(before).await.unwrap();
    assert_eq!(report.multipart_uploads_aborted, 0, "{report:?}");
    assert_eq!(pending_keys(&t).await.len(), 3);

    // A cutoff after they started aborts this sink's, and only those.
    let report = sink
        .cleanup(chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.multipart_uploads_aborted, 2, "{report:?}");
    assert_eq!(pending_keys(&t).await, ["stoa/prod-eu/runs/r1/db/dump"]);
    assert!(
        sink.list("").await.unwrap().is_empty(),
        "an object appeared"
    );

    // Nothing left to do for this sink; the other sink cleans up its own.
    let again = sink
        .cleanup(chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(!again.removed_anything(), "{again:?}");
    let report = other
        .cleanup(chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(report.multipart_uploads_aborted, 1, "{report:?}");
    assert!(t.pending_uploads().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_on_a_server_without_list_multipart_uploads_says_what_to_do() {
    let t = s3t::s3s_fs_target().await;
    let sink = builder(&t).prefix("stoa").build().unwrap();
    let err = sink.cleanup(chrono::Utc::now()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(err.component(), Some("storage/s3"), "{err}");
    assert_eq!(err.operation(), Some("cleanup"), "{err}");
    assert!(err.to_string().contains(&t.bucket), "{err}");
    assert!(
        err.hint()
            .unwrap_or_default()
            .contains("AbortIncompleteMultipartUpload"),
        "{err}"
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains(s3t::TEST_SECRET_KEY), "{text}");
    assert!(!text.contains("X-Amz-Signature"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_errors_keep_their_kind_and_never_show_the_signed_request() {
    let t = s3t::s3s_fs_target().await;
    let server = t.server().unwrap();
    let sink = builder(&t)
        .prefix("stoa")
        .retry(S3Retry {
            max_retries: 2,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            retry_timeout: Duration::from_secs(10),
        })
        .credentials(
            S3Credentials::new(&t.access_key, &t.secret_key)
                .with_session_token("session-TOKEN-must-not-leak"),
        )
        .build()
        .unwrap();
    for (status, kind, retryable) in [
        (503, ErrorKind::Unavailable, true),
        (403, ErrorKind::PermissionDenied, false),
    ] {
        server.faults().fail_always(status, FaultScope::All);
        let before = server.requests().faults;
        let err = sink.cleanup(chrono::Utc::now()).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(err.is_retryable(), retryable, "{err}");
        assert_eq!(err.http_status(), Some(status), "{err}");
        let sent = server.requests().faults - before;
        assert_eq!(sent, if retryable { 3 } else { 1 }, "requests sent");
        let text = format!("{err} {err:?}");
        for secret in [
            s3t::TEST_SECRET_KEY,
            "session-TOKEN-must-not-leak",
            "X-Amz-Signature",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    server.faults().clear();
}

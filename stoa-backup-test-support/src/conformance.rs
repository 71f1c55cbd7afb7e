//! The sink conformance suite: every [`Sink`] backend runs it to prove it keeps the contract
//! documented on the trait.
//!
//! ```no_run
//! # async fn demo() {
//! let sink = stoa_backup_core::MemorySink::new();
//! stoa_backup_test_support::conformance::run_sink_conformance(&sink).await;
//! # }
//! ```
//!
//! A sink that declares conditional puts also runs their checks (`conditional`).
//!
//! Checks panic with a message naming the sink and the broken rule. Every key the suite
//! writes lies under `<prefix>/<random run id>/`, so several suites (or several runs) can
//! share one bucket; the suite deletes what it wrote at the end, also when a check fails.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::Either;
use futures::{FutureExt, StreamExt};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::{validate_prefix, ObjectKey};
use stoa_backup_core::sink::{ObjectMeta, Sink, SinkExt};
use stoa_backup_core::stream::{self, ByteStream};

/// Size of one part in multipart uploads to object storage (S3's minimum part size).
pub const PART_SIZE: u64 = 5 * 1024 * 1024;

/// Size of the large round trip: more than three parts, not a multiple of any chunk size.
pub const LARGE_SIZE: u64 = 3 * PART_SIZE + 4097;

/// Number of objects in the listing check: more than one page (1000 keys) of S3 listing.
pub const MANY_OBJECTS: usize = 1100;

mod conditional;
mod data;

pub use data::{pseudo_random_bytes, pseudo_random_stream, sha256_of};

/// Runs the whole suite with keys under `stoa-conformance/<random>/`.
pub async fn run_sink_conformance<S: Sink + ?Sized>(sink: &S) {
    run_sink_conformance_with_prefix(sink, "stoa-conformance").await
}

/// Runs the whole suite with keys under `<prefix>/<random>/` (so suites can share a bucket).
pub async fn run_sink_conformance_with_prefix<S: Sink + ?Sized>(sink: &S, prefix: &str) {
    let prefix = prefix.trim_end_matches('/');
    if let Err(e) = validate_prefix(prefix) {
        panic!("sink conformance: invalid test-key prefix {prefix:?}: {e}");
    }
    let run = format!("{:016x}", rand::random::<u64>());
    let base = if prefix.is_empty() {
        run
    } else {
        format!("{prefix}/{run}")
    };
    let cx = Cx {
        sink,
        name: sink.describe(),
        base,
    };

    let outcome = AssertUnwindSafe(cx.run_checks()).catch_unwind().await;
    let cleanup = AssertUnwindSafe(cx.cleanup()).catch_unwind().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    if let Err(panic) = cleanup {
        std::panic::resume_unwind(panic);
    }
}

struct Cx<'a, S: ?Sized> {
    sink: &'a S,
    name: String,
    base: String,
}

impl<S: Sink + ?Sized> Cx<'_, S> {
    async fn run_checks(&self) {
        self.describe_and_preflight().await;
        self.keys_are_validated().await;
        self.get_of_missing_key_is_not_found().await;
        self.round_trips().await;
        self.put_replaces().await;
        self.list_by_prefix().await;
        self.delete().await;
        self.concurrent_puts().await;
        if self.sink.capabilities().atomic_put {
            self.failing_stream_leaves_nothing().await;
            self.dropped_put_leaves_nothing().await;
        } else {
            eprintln!(
                "sink conformance ({}): the sink declares atomic_put = false; atomicity checks not run",
                self.name
            );
        }
        self.list_more_than_one_page().await;
        if self.sink.capabilities().conditional_put {
            self.conditional_puts().await;
        }
    }

    // ----- helpers -----

    fn key(&self, rel: &str) -> ObjectKey {
        let k = format!("{}/{rel}", self.base);
        ObjectKey::new(k.as_str()).unwrap_or_else(|e| panic!("bad test key {k:?}: {e}"))
    }

    fn prefix(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{rel}", self.base)
        }
    }

    fn fail(&self, what: &str, err: &Error) -> ! {
        panic!("sink conformance ({}): {what}: {err}", self.name)
    }

    async fn put(&self, key: &ObjectKey, s: ByteStream) -> u64 {
        match self.sink.put(key, s).await {
            Ok(r) => r.size,
            Err(e) => self.fail(&format!("put of {key} failed"), &e),
        }
    }

    async fn put_bytes(&self, key: &ObjectKey, bytes: &[u8]) {
        let size = self
            .put(key, stream::once(Bytes::copy_from_slice(bytes)))
            .await;
        assert_eq!(
            size,
            bytes.len() as u64,
            "sink conformance ({}): put of {key} reported the wrong size",
            self.name
        );
    }

    async fn get_all(&self, key: &ObjectKey) -> Vec<u8> {
        let s = match self.sink.get(key).await {
            Ok(s) => s,
            Err(e) => self.fail(&format!("get of {key} failed"), &e),
        };
        match stream::collect(s).await {
            Ok(b) => b,
            Err(e) => self.fail(&format!("reading the stream of {key} failed"), &e),
        }
    }

    async fn get_digest(&self, key: &ObjectKey) -> (u64, Vec<u8>) {
        let s = match self.sink.get(key).await {
            Ok(s) => s,
            Err(e) => self.fail(&format!("get of {key} failed"), &e),
        };
        match sha256_of(s).await {
            Ok(d) => d,
            Err(e) => self.fail(&format!("reading the stream of {key} failed"), &e),
        }
    }

    async fn list(&self, prefix: &str) -> Vec<ObjectMeta> {
        match self.sink.list(prefix).await {
            Ok(l) => l,
            Err(e) => self.fail(&format!("list of {prefix:?} failed"), &e),
        }
    }

    /// Keys under `prefix`, sorted, checking that none is listed twice.
    async fn list_keys(&self, prefix: &str) -> Vec<String> {
        let listed = self.list(prefix).await;
        let mut keys: Vec<String> = listed.iter().map(|m| m.key.as_str().to_string()).collect();
        keys.sort();
        let unique: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(
            unique.len(),
            keys.len(),
            "sink conformance ({}): list({prefix:?}) returned duplicate keys",
            self.name
        );
        for k in &keys {
            assert!(
                ObjectKey::new(k.as_str()).unwrap().starts_with_prefix(prefix),
                "sink conformance ({}): list({prefix:?}) returned {k:?}, which is not under the prefix",
                self.name
            );
        }
        keys
    }

    async fn delete_key(&self, key: &ObjectKey) {
        if let Err(e) = self.sink.delete(key).await {
            self.fail(&format!("delete of {key} failed"), &e)
        }
    }

    async fn assert_not_found(&self, key: &ObjectKey, context: &str) {
        match self.sink.get(key).await {
            Ok(s) => {
                let got = stream::collect(s).await.map(|b| b.len());
                panic!(
                    "sink conformance ({}): {context}: get of {key} should fail with NotFound, \
                     but an object is visible ({got:?} bytes)",
                    self.name
                )
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => self.fail(
                &format!(
                    "{context}: get of {key} should fail with NotFound, not {:?}",
                    e.kind()
                ),
                &e,
            ),
        }
    }

    /// Nothing under `key`: get is NotFound and no listing shows it.
    async fn assert_absent(&self, key: &ObjectKey, context: &str) {
        self.assert_not_found(key, context).await;
        let parent = key.as_str().rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        for prefix in [key.as_str(), parent] {
            let keys = self.list_keys(prefix).await;
            assert!(
                !keys.iter().any(|k| k == key.as_str()),
                "sink conformance ({}): {context}: {key} is still listed under {prefix:?}",
                self.name
            );
        }
    }

    async fn listed_size(&self, key: &ObjectKey) -> u64 {
        let listed = self.list(key.as_str()).await;
        match listed.iter().find(|m| &m.key == key) {
            Some(m) => m.size,
            None => panic!(
                "sink conformance ({}): list({:?}) does not show the object {key}; a prefix equal \
                 to a key must list that key",
                self.name,
                key.as_str()
            ),
        }
    }

    // ----- checks -----

    async fn describe_and_preflight(&self) {
        assert!(
            !self.name.is_empty(),
            "sink conformance: describe() must not be empty"
        );
        if let Err(e) = self.sink.preflight().await {
            self.fail("preflight failed", &e)
        }
    }

    async fn keys_are_validated(&self) {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "a/./b",
            "runs/..",
            "",
            "a//b",
            "C:/x",
        ] {
            match ObjectKey::new(bad) {
                Ok(k) => panic!("sink conformance: the key {bad:?} must be refused, got {k:?}"),
                Err(e) => assert_eq!(
                    e.kind(),
                    ErrorKind::Config,
                    "sink conformance: refusing {bad:?} should be a Config error: {e}"
                ),
            }
        }
        assert!(
            self.key("a").join("../../escape").is_err(),
            "join must refuse '..'"
        );
        for bad in ["../x", "/abs", "a/../b"] {
            match self.sink.list(bad).await {
                Ok(l) => panic!(
                    "sink conformance ({}): list({bad:?}) must be refused, returned {} objects",
                    self.name,
                    l.len()
                ),
                Err(e) => assert_eq!(
                    e.kind(),
                    ErrorKind::Config,
                    "sink conformance ({}): list({bad:?}) should be a Config error: {e}",
                    self.name
                ),
            }
        }
    }

    async fn get_of_missing_key_is_not_found(&self) {
        self.assert_not_found(&self.key("missing/object"), "missing key")
            .await;
        // A prefix of existing objects is not an object.
        let k = self.key("dirlike/inner/object");
        self.put_bytes(&k, b"x").await;
        self.assert_not_found(&self.key("dirlike/inner"), "prefix of an object")
            .await;
        self.assert_not_found(&self.key("dirlike"), "prefix of an object")
            .await;
        assert!(
            self.sink
                .exists(&k)
                .await
                .unwrap_or_else(|e| self.fail("exists failed", &e)),
            "sink conformance ({}): exists({k}) is false right after put",
            self.name
        );
        self.delete_key(&k).await;
        assert!(
            !self
                .sink
                .exists(&k)
                .await
                .unwrap_or_else(|e| self.fail("exists failed", &e)),
            "sink conformance ({}): exists({k}) is true after delete",
            self.name
        );
    }

    async fn round_trips(&self) {
        // Empty, as an empty stream and as a stream of empty chunks.
        let k = self.key("roundtrip/empty");
        assert_eq!(self.put(&k, stream::empty()).await, 0, "empty put size");
        assert!(
            self.get_all(&k).await.is_empty(),
            "empty object read back non-empty"
        );
        assert_eq!(
            self.listed_size(&k).await,
            0,
            "listed size of the empty object"
        );
        let k2 = self.key("roundtrip/empty-chunks");
        let s: ByteStream = Box::pin(futures::stream::iter((0..3).map(|_| Ok(Bytes::new()))));
        assert_eq!(self.put(&k2, s).await, 0, "put of empty chunks size");
        assert!(self.get_all(&k2).await.is_empty());

        // Small, in one chunk and in one-byte chunks.
        let small = b"hello, stoa-backup\n";
        let k = self.key("roundtrip/small.txt");
        self.put_bytes(&k, small).await;
        assert_eq!(
            self.get_all(&k).await,
            small,
            "sink conformance ({}): small object read back differently",
            self.name
        );
        assert_eq!(self.listed_size(&k).await, small.len() as u64);
        let k = self.key("roundtrip/small-bytewise");
        let s: ByteStream = Box::pin(futures::stream::iter(
            small
                .iter()
                .map(|b| Ok(Bytes::copy_from_slice(&[*b])))
                .collect::<Vec<_>>(),
        ));
        assert_eq!(self.put(&k, s).await, small.len() as u64);
        assert_eq!(
            self.get_all(&k).await,
            small,
            "bytewise put read back differently"
        );

        // Large: more than three multipart parts, many odd-sized chunks, incompressible.
        let k = self.key("roundtrip/large.bin");
        let size = self.put(&k, pseudo_random_stream(1, LARGE_SIZE)).await;
        assert_eq!(
            size, LARGE_SIZE,
            "sink conformance ({}): put of the large object reported the wrong size",
            self.name
        );
        let expected = sha256_of(pseudo_random_stream(1, LARGE_SIZE))
            .await
            .unwrap();
        let got = self.get_digest(&k).await;
        assert_eq!(
            got.0, LARGE_SIZE,
            "sink conformance ({}): large object read back with the wrong size",
            self.name
        );
        assert!(
            got.1 == expected.1,
            "sink conformance ({}): large object read back with a different SHA-256",
            self.name
        );
        assert_eq!(
            self.listed_size(&k).await,
            LARGE_SIZE,
            "listed size of the large object"
        );
    }

    async fn put_replaces(&self) {
        let k = self.key("replace/object");
        self.put_bytes(&k, b"first version").await;
        self.put_bytes(&k, b"2nd").await;
        assert_eq!(
            self.get_all(&k).await,
            b"2nd",
            "sink conformance ({}): put under an existing key must replace it (shorter)",
            self.name
        );
        assert_eq!(self.listed_size(&k).await, 3, "listed size after replacing");
        let long = pseudo_random_bytes(2, 300_000);
        self.put_bytes(&k, &long).await;
        assert!(
            self.get_all(&k).await == long,
            "sink conformance ({}): put under an existing key must replace it (longer)",
            self.name
        );
        self.put(&k, stream::empty()).await;
        assert!(
            self.get_all(&k).await.is_empty(),
            "sink conformance ({}): put of an empty stream must replace the object",
            self.name
        );
        let keys = self.list_keys(&self.prefix("replace")).await;
        assert_eq!(
            keys,
            vec![k.as_str().to_string()],
            "replacing must not leave extra objects"
        );
    }

    async fn list_by_prefix(&self) {
        let rels = [
            "list/a/1",
            "list/a/2",
            "list/a/b/3",
            "list/ab/4",
            "list/abc/5",
            "list/b",
        ];
        for (i, r) in rels.iter().enumerate() {
            self.put_bytes(&self.key(r), &vec![b'x'; i + 1]).await;
        }
        let want = |rs: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = rs.iter().map(|r| self.prefix(r)).collect();
            v.sort();
            v
        };
        let cases: Vec<(String, Vec<String>)> = vec![
            (self.prefix("list"), want(&rels)),
            (format!("{}/", self.prefix("list")), want(&rels)),
            (
                self.prefix("list/a"),
                want(&["list/a/1", "list/a/2", "list/a/b/3"]),
            ),
            (
                format!("{}/", self.prefix("list/a")),
                want(&["list/a/1", "list/a/2", "list/a/b/3"]),
            ),
            (self.prefix("list/a/b"), want(&["list/a/b/3"])),
            (self.prefix("list/ab"), want(&["list/ab/4"])),
            (self.prefix("list/ab/4"), want(&["list/ab/4"])),
            (self.prefix("list/b"), want(&["list/b"])),
            (self.prefix("list/missing"), vec![]),
            (self.prefix("list/a/missing/deeper"), vec![]),
            (self.prefix("list/a/1/x"), vec![]),
        ];
        for (prefix, expected) in cases {
            let got = self.list_keys(&prefix).await;
            assert_eq!(
                got, expected,
                "sink conformance ({}): list({prefix:?}) must return exactly the keys under it \
                 (segment-wise: \"x/ab\" does not match \"x/abc/..\")",
                self.name
            );
        }
        // Sizes, and the empty prefix lists everything (this suite's keys among others).
        let listed = self.list(&self.prefix("list")).await;
        for m in &listed {
            let i = rels
                .iter()
                .position(|r| self.prefix(r) == m.key.as_str())
                .unwrap();
            assert_eq!(
                m.size,
                i as u64 + 1,
                "sink conformance ({}): list reports the wrong size for {}",
                self.name,
                m.key
            );
        }
        let all: BTreeSet<String> = self.list_keys("").await.into_iter().collect();
        for r in rels {
            assert!(
                all.contains(&self.prefix(r)),
                "sink conformance ({}): list(\"\") does not show {}",
                self.name,
                self.prefix(r)
            );
        }
    }

    async fn delete(&self) {
        let k = self.key("delete/x/object");
        let sibling = self.key("delete/x/sibling");
        self.put_bytes(&k, b"to be deleted").await;
        self.put_bytes(&sibling, b"stays").await;
        self.delete_key(&k).await;
        self.assert_absent(&k, "after delete").await;
        assert_eq!(
            self.get_all(&sibling).await,
            b"stays",
            "sink conformance ({}): delete removed a sibling",
            self.name
        );
        self.delete_key(&k).await; // again: missing is fine
        self.delete_key(&self.key("delete/never/existed")).await;
        self.delete_key(&sibling).await;
        self.assert_absent(&sibling, "after delete").await;
        assert!(
            self.list_keys(&self.prefix("delete")).await.is_empty(),
            "sink conformance ({}): objects remain under a prefix after deleting them all",
            self.name
        );
        // The key can be written again after its parent was emptied.
        self.put_bytes(&k, b"again").await;
        assert_eq!(self.get_all(&k).await, b"again");
        self.delete_key(&k).await;
    }

    async fn concurrent_puts(&self) {
        let keys: Vec<ObjectKey> = (0..16)
            .map(|i| self.key(&format!("concurrent/{i:02}")))
            .collect();
        let puts = keys.iter().enumerate().map(|(i, k)| {
            let len = 64 * 1024 + i as u64 * 1031;
            async move {
                (
                    i,
                    self.sink
                        .put(k, pseudo_random_stream(100 + i as u64, len))
                        .await,
                )
            }
        });
        for (i, r) in futures::future::join_all(puts).await {
            if let Err(e) = r {
                self.fail(&format!("concurrent put of {} failed", keys[i]), &e)
            }
        }
        for (i, k) in keys.iter().enumerate() {
            let len = 64 * 1024 + i as u64 * 1031;
            let expected = sha256_of(pseudo_random_stream(100 + i as u64, len))
                .await
                .unwrap();
            assert!(
                self.get_digest(k).await == expected,
                "sink conformance ({}): concurrently put object {k} read back differently",
                self.name
            );
        }
        assert_eq!(
            self.list_keys(&self.prefix("concurrent")).await.len(),
            keys.len()
        );
    }

    async fn failing_stream_leaves_nothing(&self) {
        let cases: [(&str, u64); 3] = [
            ("at-once", 0),
            ("after-some-chunks", 200_000),
            // Past the first multipart part, so object stores must abort an upload.
            ("after-a-part", PART_SIZE + PART_SIZE / 5),
        ];
        for (name, after) in cases {
            // Without a previous object: nothing becomes visible.
            let k = self.key(&format!("failing/{name}/new"));
            self.expect_failed_put(&k, after).await;
            self.assert_absent(&k, &format!("stream failing {name}"))
                .await;

            // With a previous object: it stays as it was.
            let k = self.key(&format!("failing/{name}/existing"));
            let old = pseudo_random_bytes(3, 1000);
            self.put_bytes(&k, &old).await;
            self.expect_failed_put(&k, after).await;
            assert!(
                self.get_all(&k).await == old,
                "sink conformance ({}): a put whose stream failed ({name}) changed the existing \
                 object",
                self.name
            );
            assert_eq!(
                self.listed_size(&k).await,
                old.len() as u64,
                "listed size after a failed replace"
            );
        }
    }

    async fn expect_failed_put(&self, key: &ObjectKey, after: u64) {
        let s: ByteStream = Box::pin(pseudo_random_stream(4, after).chain(futures::stream::iter(
            [Err(Error::source_failed(
                "conformance: the source failed mid-stream",
            ))],
        )));
        match self.sink.put(key, s).await {
            Ok(r) => panic!(
                "sink conformance ({}): put of {key} succeeded ({} bytes) although its stream \
                 failed after {after} bytes",
                self.name, r.size
            ),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Source,
                "sink conformance ({}): the stream's own error must be passed on, not replaced: {e}",
                self.name
            ),
        }
    }

    async fn dropped_put_leaves_nothing(&self) {
        let k = self.key("dropped/new");
        self.drop_put_mid_stream(&k).await;
        self.assert_absent(&k, "put dropped mid-stream").await;

        let k = self.key("dropped/existing");
        self.put_bytes(&k, b"previous").await;
        self.drop_put_mid_stream(&k).await;
        assert_eq!(
            self.get_all(&k).await,
            b"previous",
            "sink conformance ({}): a put dropped mid-stream changed the existing object",
            self.name
        );
    }

    /// Starts a put whose stream yields some chunks then never ends; once the sink has
    /// asked for the chunk after them, drops the put future (cancellation).
    async fn drop_put_mid_stream(&self, key: &ObjectKey) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let consumed = Arc::new(AtomicUsize::new(0));
        let counter = consumed.clone();
        let head = futures::stream::iter(0..3u64).map(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::from(pseudo_random_bytes(50 + i, 64 * 1024)))
        });
        let tail = futures::stream::once(async move {
            let _ = tx.send(());
            futures::future::pending::<Result<Bytes>>().await
        });
        let s: ByteStream = Box::pin(head.chain(tail));
        let put = self.sink.put(key, s);
        match tokio::time::timeout(Duration::from_secs(60), futures::future::select(put, rx)).await {
            Err(_) => panic!(
                "sink conformance ({}): put of {key} did not consume 3 chunks within 60s \
                 ({} consumed)",
                self.name,
                consumed.load(Ordering::SeqCst)
            ),
            Ok(Either::Left((r, _))) => panic!(
                "sink conformance ({}): put of {key} finished although its stream never ended: {r:?}",
                self.name
            ),
            Ok(Either::Right((_, put))) => drop(put),
        }
        // Let any cleanup the sink spawned on drop make progress.
        tokio::task::yield_now().await;
    }

    async fn list_more_than_one_page(&self) {
        let prefix = self.prefix("many");
        let keys: Vec<ObjectKey> = (0..MANY_OBJECTS)
            .map(|i| self.key(&format!("many/{:02}/{i:05}", i % 7)))
            .collect();
        let results: Vec<(usize, Result<()>)> = futures::stream::iter(keys.iter().enumerate())
            .map(|(i, k)| async move {
                (
                    i,
                    self.sink
                        .put_bytes(k, Bytes::from(i.to_string()))
                        .await
                        .map(|_| ()),
                )
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for (i, r) in results {
            if let Err(e) = r {
                self.fail(&format!("put of {} failed", keys[i]), &e)
            }
        }
        let listed = self.list(&prefix).await;
        let got: BTreeSet<&str> = listed.iter().map(|m| m.key.as_str()).collect();
        let want: BTreeSet<&str> = keys.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            listed.len(),
            MANY_OBJECTS,
            "sink conformance ({}): list({prefix:?}) must return all {MANY_OBJECTS} objects \
             (every page), got {}",
            self.name,
            listed.len()
        );
        assert!(
            got == want,
            "sink conformance ({}): list({prefix:?}) returned other keys than were put",
            self.name
        );
        for m in &listed {
            let i: usize = m.key.file_name().parse().unwrap();
            assert_eq!(
                m.size,
                i.to_string().len() as u64,
                "listed size of {}",
                m.key
            );
        }
        let deletes: Vec<(usize, Result<()>)> = futures::stream::iter(keys.iter().enumerate())
            .map(|(i, k)| async move { (i, self.sink.delete(k).await) })
            .buffer_unordered(16)
            .collect()
            .await;
        for (i, r) in deletes {
            if let Err(e) = r {
                self.fail(&format!("delete of {} failed", keys[i]), &e)
            }
        }
        assert!(
            self.list(&prefix).await.is_empty(),
            "sink conformance ({}): objects remain under {prefix:?} after deleting them all",
            self.name
        );
    }

    /// Deletes everything the suite wrote, then checks nothing is left.
    async fn cleanup(&self) {
        let listed = self.list(&self.base).await;
        let deletes: Vec<Result<()>> = futures::stream::iter(listed.iter())
            .map(|m| self.sink.delete(&m.key))
            .buffer_unordered(16)
            .collect()
            .await;
        for r in deletes {
            if let Err(e) = r {
                self.fail("cleanup: delete failed", &e)
            }
        }
        let left = self.list_keys(&self.base).await;
        assert!(
            left.is_empty(),
            "sink conformance ({}): cleanup left objects behind: {left:?}",
            self.name
        );
    }
}

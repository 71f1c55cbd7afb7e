//! `x-amz-checksum-sha256` on uploads: sent with every `PutObject` and `UploadPart`, what
//! the test servers do with it, and when a put reports `store_checked`. An [`S3Proxy`]
//! between sink and server counts the headers, corrupts bodies on the way, or checks
//! checksums the way AWS S3 documents it (which neither s3s-fs nor moto fully does).

use stoa_backup_core::sink::PutResult;
use stoa_backup_test_support::s3::proxy::{checksum_sha256, S3Proxy, Upload};

use super::*;
use s3t::Method;

/// Single puts: under one part. Multipart: three parts of 5, 5 and 1 MiB.
const SMALL: usize = 300 * 1024;
const LARGE: usize = 11 * MIB;

/// Through `proxy`, without the ETag check (`etag.rs` tests that one), so only the
/// checksums can earn a claim.
fn via(t: &S3Target, proxy: &S3Proxy) -> S3SinkBuilder {
    builder(t)
        .endpoint(proxy.endpoint())
        .part_size(5 * MIB)
        .etag_checks(false)
}

/// Puts `len` bytes of `block` under `k`, checks the stored bytes and returns the result.
async fn put_and_check(sink: &S3Sink, k: &ObjectKey, block: &Bytes, len: usize) -> PutResult {
    let r = sink
        .put(k, block_stream(block.clone(), len))
        .await
        .unwrap_or_else(|e| panic!("put of {len} bytes under {k}: {e}"));
    assert_eq!(r.size, len as u64);
    assert_block_content(sink, k, block, len).await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upload_carries_a_checksum_and_untrusted_stores_earn_no_claim() {
    let block = random_block();
    for t in s3t::targets().await {
        let proxy = S3Proxy::start(&t.endpoint).await;
        // A custom endpoint: checksums sent, the store not taken to verify them.
        let sink = via(&t, &proxy).prefix("sent").build().unwrap();
        for (name, len) in [("single", SMALL), ("multipart", LARGE)] {
            let r = put_and_check(&sink, &key(&format!("runs/r1/{name}")), &block, len).await;
            assert_eq!(r.store_checked, None, "{}: {name}", t.name());
        }
        let c = proxy.counts();
        assert_eq!(c.uploads, 4, "{}: 1 PutObject + 3 UploadPart", t.name());
        assert_eq!(c.uploads_with_checksum, 4, "{}: {c:?}", t.name());

        // Vouched for: a claim only where the server's answers echoed every checksum.
        // s3s-fs echoes a PutObject's (which it checks) but no UploadPart's (which it does
        // not check); moto echoes none (it ignores the header object_store sends).
        let sink = via(&t, &proxy)
            .prefix("vouched")
            .store_verifies_checksums(true)
            .build()
            .unwrap();
        let single = put_and_check(&sink, &key("runs/r1/single"), &block, SMALL).await;
        let multi = put_and_check(&sink, &key("runs/r1/multipart"), &block, LARGE).await;
        match t.kind {
            s3t::S3ServerKind::S3sFs => {
                let how = single
                    .store_checked
                    .expect("s3s-fs echoes a PutObject's checksum");
                assert!(how.contains("single PutObject"), "{how}");
                assert_eq!(
                    multi.store_checked, None,
                    "s3s-fs echoed UploadPart checksums"
                );
            }
            s3t::S3ServerKind::External => {
                assert_eq!(single.store_checked, None, "moto echoed a checksum");
                assert_eq!(multi.store_checked, None, "moto echoed a checksum");
            }
        }

        // Off: no header at all, and no claim even when vouched for.
        let before = proxy.counts();
        let sink = via(&t, &proxy)
            .prefix("off")
            .write_checksums(false)
            .store_verifies_checksums(true)
            .build()
            .unwrap();
        for (name, len) in [("single", SMALL), ("multipart", LARGE)] {
            let r = put_and_check(&sink, &key(&format!("runs/r1/{name}")), &block, len).await;
            assert_eq!(r.store_checked, None, "{}: {name}", t.name());
        }
        let c = proxy.counts();
        assert_eq!(c.uploads - before.uploads, 4, "{}", t.name());
        assert_eq!(c.uploads_with_checksum, before.uploads_with_checksum);
        wait_no_pending_uploads(&t, "after checksummed puts").await;
        eprintln!("checksums sent, claims withheld on {}", t.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_checks_like_aws_earns_the_claim_for_single_and_multipart_puts() {
    let t = s3t::s3s_fs_target().await;
    let proxy = S3Proxy::start(&t.endpoint).await;
    proxy.emulate_aws_checksums(true);
    let block = random_block();
    let sink = via(&t, &proxy)
        .prefix("aws")
        .store_verifies_checksums(true)
        .build()
        .unwrap();
    let single = put_and_check(&sink, &key("runs/r1/single"), &block, SMALL).await;
    assert_eq!(
        single.store_checked.as_deref(),
        Some(
            "S3 verified the x-amz-checksum-sha256 (SHA-256 of the body the sink sent) of the \
             single PutObject and echoed it back"
        )
    );
    let multi = put_and_check(&sink, &key("runs/r1/multipart"), &block, LARGE).await;
    assert_eq!(
        multi.store_checked.as_deref(),
        Some(
            "S3 verified the x-amz-checksum-sha256 (SHA-256 of the body the sink sent) of every \
             uploaded part (3 parts) and echoed each back"
        )
    );
    // The same store, not vouched for (a custom endpoint's default): no claim.
    let sink = via(&t, &proxy).prefix("aws").build().unwrap();
    let r = put_and_check(&sink, &key("runs/r2/multipart"), &block, LARGE).await;
    assert_eq!(r.store_checked, None);
    assert_eq!(proxy.counts().refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_corrupted_on_the_way_fails_the_put_or_earns_no_claim() {
    let block = random_block();
    let mut cases: Vec<(S3Target, bool)> = Vec::new();
    for t in s3t::targets().await {
        cases.push((t, false));
    }
    cases.push((s3t::s3s_fs_target().await, true));
    for (t, aws) in cases {
        let name = format!(
            "{}{}",
            t.name(),
            if aws { " behind AWS-like checks" } else { "" }
        );
        let proxy = S3Proxy::start(&t.endpoint).await;
        proxy.emulate_aws_checksums(aws);
        let sink = via(&t, &proxy)
            .prefix("corrupt")
            .store_verifies_checksums(true)
            .retry(S3Retry {
                max_retries: 0,
                ..S3Retry::default()
            })
            .build()
            .unwrap();
        // A single put over an existing object, and a multipart put whose second part is
        // changed on the way.
        let single = key("runs/r1/single");
        sink.put_bytes(&single, Bytes::from_static(b"the previous backup"))
            .await
            .unwrap();
        let multi = key("runs/r1/multipart");
        let mut refused = Vec::new();
        for (k, len, kind) in [
            (&single, SMALL, Upload::PutObject),
            (&multi, LARGE, Upload::UploadPart),
        ] {
            let n = if kind == Upload::UploadPart { 2 } else { 1 };
            let before = proxy.counts();
            proxy.corrupt_nth(n, kind);
            let r = sink.put(k, block_stream(block.clone(), len)).await;
            assert_eq!(
                proxy.counts().corrupted - before.corrupted,
                1,
                "{name}: {k}"
            );
            refused.push(r.is_err());
            match r {
                Err(e) => {
                    // Refused: nothing new is visible, what was there stays.
                    eprintln!("{name}: the corrupted {k} was refused: {e}");
                    assert_eq!(e.artifact(), Some(k.as_str()), "{name}: {e}");
                    if aws {
                        assert_eq!(e.kind(), ErrorKind::Integrity, "{name}: {e}");
                        assert!(e.is_retryable(), "{name}: {e}");
                    }
                    if k == &single {
                        let old = sink.get_bytes(k).await.unwrap();
                        assert_eq!(old, b"the previous backup"[..], "{name}");
                    } else {
                        assert!(!sink.exists(k).await.unwrap(), "{name}: {k} is visible");
                    }
                }
                Ok(r) => {
                    // Accepted: the store did not check, and the sink must not say it did.
                    eprintln!("{name}: the corrupted {k} was stored unchecked");
                    assert_eq!(r.store_checked, None, "{name}: {k} claimed checked");
                    let stored = sink.get_bytes(k).await.unwrap();
                    assert_eq!(stored.len(), len, "{name}");
                    assert!(stored[..] != block_stream_bytes(&block, len)[..], "{name}");
                }
            }
        }
        wait_no_pending_uploads(&t, "after corrupted puts").await;
        // AWS-like checks refuse both (BadDigest); so does s3s alone, which checks every
        // signed body against its x-amz-content-sha256; moto checks neither.
        let c = proxy.counts();
        assert_eq!(c.refused, if aws { 2 } else { 0 }, "{name}: {c:?}");
        let expected = t.kind == s3t::S3ServerKind::S3sFs;
        assert_eq!(
            refused,
            [expected, expected],
            "{name}: refused (single, multipart)"
        );
    }
}

/// The bytes [`block_stream`] yields.
fn block_stream_bytes(block: &Bytes, len: usize) -> Vec<u8> {
    block.iter().copied().cycle().take(len).collect()
}

/// Raw requests with a wrong `x-amz-checksum-sha256` (body and signed payload hash right):
/// what each test server does with the header on its own. The reason neither is trusted
/// by default, and why an echo alone proves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_test_servers_do_with_a_wrong_checksum() {
    for t in s3t::targets().await {
        let body = Bytes::from_static(b"the bytes the server receives");
        let wrong = checksum_sha256(b"other bytes");
        let req = |method: Method,
                   path: String,
                   query: Vec<(&'static str, String)>,
                   headers: Vec<(&'static str, String)>,
                   body: Bytes| {
            let t = &t;
            async move {
                let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                s3t::signed_request_with_headers(
                    method,
                    &t.endpoint,
                    &t.region,
                    &t.access_key,
                    &t.secret_key,
                    &path,
                    &q,
                    &h,
                    body,
                )
                .await
            }
        };
        let object = format!("/{}/probe/single", t.bucket);
        let (status, headers, text) = req(
            Method::PUT,
            object.clone(),
            vec![],
            vec![("x-amz-checksum-sha256", wrong.clone())],
            body.clone(),
        )
        .await;
        let (got, _, stored) = req(Method::GET, object.clone(), vec![], vec![], Bytes::new()).await;
        match t.kind {
            s3t::S3ServerKind::S3sFs => {
                // s3s-fs checks a PutObject's checksum, but only after storing the object.
                assert_eq!(status.as_u16(), 400, "{text}");
                assert!(text.contains("BadDigest"), "{text}");
                assert!(
                    got.is_success(),
                    "s3s-fs no longer keeps a refused object: {got}"
                );
                assert_eq!(stored.as_bytes(), &body[..]);
            }
            s3t::S3ServerKind::External => {
                // moto ignores the header (it reads it only with x-amz-sdk-checksum-algorithm).
                assert!(
                    status.is_success(),
                    "moto refused a wrong checksum: {status} {text}"
                );
                assert!(
                    headers.get("x-amz-checksum-sha256").is_none(),
                    "{headers:?}"
                );
                assert!(got.is_success());
            }
        }
        if t.kind == s3t::S3ServerKind::External {
            // With the SDKs' extra header, moto echoes the wrong checksum back, unchecked.
            let (status, headers, text) = req(
                Method::PUT,
                format!("/{}/probe/sdk", t.bucket),
                vec![],
                vec![
                    ("x-amz-checksum-sha256", wrong.clone()),
                    ("x-amz-sdk-checksum-algorithm", "SHA256".to_string()),
                ],
                body.clone(),
            )
            .await;
            assert!(status.is_success(), "{status} {text}");
            assert_eq!(
                headers
                    .get("x-amz-checksum-sha256")
                    .map(|v| v.to_str().unwrap()),
                Some(wrong.as_str()),
                "moto no longer echoes an unchecked checksum"
            );
        }

        // UploadPart: accepted by both, the checksum neither checked nor echoed.
        let mp = format!("/{}/probe/multipart", t.bucket);
        let (status, _, text) = req(
            Method::POST,
            mp.clone(),
            vec![("uploads", String::new())],
            vec![("x-amz-checksum-algorithm", "SHA256".to_string())],
            Bytes::new(),
        )
        .await;
        assert!(status.is_success(), "{}: {status} {text}", t.name());
        let upload_id = text
            .split("<UploadId>")
            .nth(1)
            .and_then(|r| r.split("</UploadId>").next())
            .unwrap_or_else(|| panic!("no UploadId in {text}"))
            .to_string();
        let (status, headers, text) = req(
            Method::PUT,
            mp.clone(),
            vec![
                ("partNumber", "1".to_string()),
                ("uploadId", upload_id.clone()),
            ],
            vec![("x-amz-checksum-sha256", wrong.clone())],
            body.clone(),
        )
        .await;
        assert!(
            status.is_success(),
            "{} now refuses a part with a wrong checksum: {status} {text}",
            t.name()
        );
        assert!(
            headers.get("x-amz-checksum-sha256").is_none(),
            "{headers:?}"
        );
        let (status, _, text) = req(
            Method::DELETE,
            mp,
            vec![("uploadId", upload_id)],
            vec![],
            Bytes::new(),
        )
        .await;
        assert!(status.is_success(), "{status} {text}");
        eprintln!("{}: wrong checksums not refused as AWS S3 does", t.name());
    }
}

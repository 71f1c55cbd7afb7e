//! The ETag check on stores not known to verify checksums (the default for custom
//! endpoints): a put whose ETag equals the MD5s of what the sink sent reports
//! `store_checked`, sparing the read-back; a body changed on the way never does.

use stoa_backup_test_support::s3::proxy::{S3Proxy, Upload};

use super::*;

/// Under one part, and three parts of 5, 5 and 1 MiB.
const SMALL: usize = 300 * 1024;
const LARGE: usize = 11 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_whose_etag_matches_what_was_sent_are_store_checked() {
    let block = random_block();
    for t in s3t::targets().await {
        let sink = builder(&t)
            .prefix("etag")
            .part_size(5 * MIB)
            .build()
            .unwrap();
        let single = key("runs/r1/single");
        let r = sink
            .put(&single, block_stream(block.clone(), SMALL))
            .await
            .unwrap();
        let how = r
            .store_checked
            .unwrap_or_else(|| panic!("{}: single put unchecked", t.name()));
        assert!(how.contains("ETag of the single PutObject"), "{how}");
        assert_block_content(&sink, &single, &block, SMALL).await;

        let multi = key("runs/r1/multipart");
        let r = sink
            .put(&multi, block_stream(block.clone(), LARGE))
            .await
            .unwrap();
        let how = r
            .store_checked
            .unwrap_or_else(|| panic!("{}: multipart put unchecked", t.name()));
        assert!(
            how.contains("multipart ETag") && how.contains("3 parts"),
            "{how}"
        );
        assert_block_content(&sink, &multi, &block, LARGE).await;

        // Off, or with SSE-KMS (whose ETags are not MD5s): nothing claimed.
        for sink in [
            builder(&t)
                .prefix("etag-off")
                .etag_checks(false)
                .build()
                .unwrap(),
            builder(&t)
                .prefix("etag-kms")
                .encryption(S3Encryption::Kms {
                    key_id: "alias/stoa-backups".into(),
                    bucket_key: None,
                })
                .build()
                .unwrap(),
        ] {
            let Ok(r) = sink.put(&multi, block_stream(block.clone(), LARGE)).await else {
                continue; // a server refusing SSE-KMS makes no claim either
            };
            assert_eq!(r.store_checked, None, "{}: {sink:?}", t.name());
        }
        wait_no_pending_uploads(&t, "after the ETag puts").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_changed_on_the_way_fails_the_put_or_earns_no_etag_claim() {
    let block = random_block();
    for t in s3t::targets().await {
        let proxy = S3Proxy::start(&t.endpoint).await;
        let sink = builder(&t)
            .endpoint(proxy.endpoint())
            .prefix("etag-corrupt")
            .part_size(5 * MIB)
            .retry(S3Retry {
                max_retries: 0,
                ..S3Retry::default()
            })
            .build()
            .unwrap();
        for (name, len, kind, nth) in [
            ("single", SMALL, Upload::PutObject, 1),
            ("multipart", LARGE, Upload::UploadPart, 2),
        ] {
            let k = key(&format!("runs/r1/{name}"));
            proxy.corrupt_nth(nth, kind);
            let before = proxy.counts().corrupted;
            match sink.put(&k, block_stream(block.clone(), len)).await {
                // s3s-fs: the signed payload hash no longer matches.
                Err(e) => eprintln!("{}: the changed {name} put was refused: {e}", t.name()),
                // moto checks neither: stored as changed, and not claimed checked.
                Ok(r) => assert_eq!(r.store_checked, None, "{}: {name}", t.name()),
            }
            assert_eq!(proxy.counts().corrupted - before, 1, "{}: {name}", t.name());
        }
        wait_no_pending_uploads(&t, "after the changed puts").await;
    }
}

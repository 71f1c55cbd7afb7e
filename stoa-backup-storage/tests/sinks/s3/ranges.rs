//! Large objects are read as parallel byte ranges of one version: byte for byte the object,
//! in order, whatever the sizes, and never a mix of two versions.

use super::*;
use stoa_backup_test_support::s3::proxy::S3Proxy;

const RANGE: usize = 64 * 1024;

/// A sink through `proxy` that reads in ranges of 64 KiB, `in_flight` at once.
fn ranged(t: &S3Target, proxy: &S3Proxy, in_flight: usize) -> S3Sink {
    S3Sink::builder(&t.bucket)
        .endpoint(proxy.endpoint())
        .region(&t.region)
        .allow_http(true)
        .credentials(S3Credentials::new(&t.access_key, &t.secret_key))
        .prefix("ranges")
        .read_range_size(RANGE)
        .ranges_in_flight(in_flight)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_are_read_in_ranges_byte_for_byte() {
    let block = random_block();
    for t in s3t::targets().await {
        let proxy = S3Proxy::start(&t.endpoint).await;
        let sink = ranged(&t, &proxy, 3);
        // (size, ranged GETs expected): up to two ranges one plain GET, then one GET for the
        // first range and one ranged GET for each further range.
        let cases = [
            (0, 0),
            (1, 0),
            (2 * RANGE, 0),
            (2 * RANGE + 1, 2),
            (5 * RANGE, 4),
            (3 * MIB + 17, 3 * MIB / RANGE),
        ];
        for (len, ranged_gets) in cases {
            let k = key(&format!("runs/r1/obj-{len}"));
            sink.put(&k, block_stream(block.clone(), len))
                .await
                .unwrap();
            let before = proxy.counts();
            assert_block_content(&sink, &k, &block, len).await;
            let after = proxy.counts();
            assert_eq!(
                after.ranged_gets - before.ranged_gets,
                ranged_gets as u64,
                "{}: {len} bytes",
                t.name()
            );
            assert_eq!(
                after.gets - before.gets,
                ranged_gets as u64 + 1,
                "{}: {len} bytes",
                t.name()
            );
        }
        // One range in flight: a single GET whatever the size.
        let single = ranged(&t, &proxy, 1);
        let k = key(&format!("runs/r1/obj-{}", 5 * RANGE));
        let before = proxy.counts();
        assert_block_content(&single, &k, &block, 5 * RANGE).await;
        assert_eq!(proxy.counts().gets - before.gets, 1, "{}", t.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_replaced_while_it_is_read_fails_the_read_as_a_conflict() {
    let block = random_block();
    for t in s3t::targets().await {
        let proxy = S3Proxy::start(&t.endpoint).await;
        let sink = ranged(&t, &proxy, 2);
        let k = key("runs/r1/replaced");
        let len = 2 * MIB;
        sink.put(&k, block_stream(block.clone(), len))
            .await
            .unwrap();
        let mut read = sink.get(&k).await.unwrap();
        let first = read.next().await.unwrap().unwrap();
        assert_eq!(first.len(), RANGE, "{}", t.name());
        // Same size, other bytes: only the version tells them apart.
        let other = Bytes::from(stoa_backup_test_support::conformance::pseudo_random_bytes(
            7, MIB,
        ));
        sink.put(&k, block_stream(other, len)).await.unwrap();
        let mut got = first.len();
        let err = loop {
            match read.next().await {
                Some(Ok(chunk)) => got += chunk.len(),
                Some(Err(e)) => break e,
                None => panic!(
                    "{}: the read of a replaced object ended without an error after {got} bytes",
                    t.name()
                ),
            }
        };
        assert_eq!(err.kind(), ErrorKind::Conflict, "{}: {err:?}", t.name());
        assert!(got < len, "{}: {got} bytes passed", t.name());
        assert!(err.to_string().contains("runs/r1/replaced"), "{err}");
    }
}

#[test]
fn read_ranges_out_of_bounds_are_refused_by_build() {
    let b = || S3Sink::builder("stoa-backups").region("eu-west-1");
    for e in [
        b().read_range_size(1024).build().unwrap_err(),
        b().ranges_in_flight(0).build().unwrap_err(),
        b().ranges_in_flight(65).build().unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Config, "{e:?}");
        assert!(e.hint().is_some(), "{e:?}");
    }
    assert!(b()
        .read_range_size(64 * 1024)
        .ranges_in_flight(64)
        .build()
        .is_ok());
}

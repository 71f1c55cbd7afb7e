//! Replication benchmark of issue #18, run by hand (not in CI): how fast a complete run's
//! copy goes, against a plain copy of the same bytes, in one run.
//!
//! ```sh
//! cargo bench --bench replicate_copy --features local,s3
//! STOA_BENCH_MB=256 STOA_BENCH_REPEAT=5 cargo bench --bench replicate_copy --features local,s3
//! ```
//!
//! **Data.** One run in a local directory: one artifact of `STOA_BENCH_MB` MiB (default 128)
//! of incompressible bytes, stored without compression (so stored = plain), checked with
//! the checksum verifier.
//!
//! **Cases**, all reading the same stored artifact:
//!  1. `std::fs::copy` of the artifact's file to a fresh directory (the floor: the kernel's
//!     copy, no hashing);
//!  2. `Catalog::copy_run` local → local (a fresh directory): stream, hash against the
//!     manifest, atomic put, read back and hash once more (a directory does not check on
//!     write), list, manifest;
//!  3. `Catalog::copy_run` local → S3, the in-process s3s-fs server (a fresh prefix):
//!     multipart upload with per-part SHA-256 checksums the server checks (no read-back).
//!
//! Runs are interleaved (`for rep { for case { run once } }`) and each figure is the median
//! of `STOA_BENCH_REPEAT` runs (default 3; at least 3). Output: per case the median wall
//! time, min–max, MiB/s, and the ratio to the plain copy.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stoa_backup::core::{Catalog, ChecksumVerifier, FileSource, Pipeline, RunId, Sink};
use stoa_backup::storage::{LocalSink, S3Credentials, S3Sink};
use stoa_backup_test_support::s3 as s3t;

const MIB: usize = 1024 * 1024;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn local(root: &Path) -> LocalSink {
    LocalSink::builder(root).create_root(true).build().unwrap()
}

/// `mb` MiB of bytes zstd cannot shrink (xorshift).
fn write_data(path: &Path, mb: usize) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = vec![0u8; mb * MIB];
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(path, data).unwrap();
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mb = env_usize("STOA_BENCH_MB", 128);
    let repeat = env_usize("STOA_BENCH_REPEAT", 3).max(3);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.bin");
    write_data(&data, mb);

    let primary: Arc<dyn Sink> = Arc::new(local(&tmp.path().join("primary")));
    let report = Pipeline::builder()
        .source(FileSource::new("files", &data, "data.bin"))
        .sink(primary.clone())
        .verifier(ChecksumVerifier::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let run: RunId = report.run_id.clone();
    let artifact = &report.manifest.artifacts[0];
    let stored_file = tmp.path().join("primary").join(artifact.key.as_str());
    let bytes = artifact.stored_size;
    let source = Catalog::new(primary.clone());

    let t = s3t::s3s_fs_target().await;
    println!(
        "replicate_copy: one run, one artifact of {mb} MiB ({bytes} stored bytes), {repeat} interleaved repetitions, median\n"
    );
    let mut plain = Vec::new();
    let mut to_local = Vec::new();
    let mut to_s3 = Vec::new();
    for rep in 0..repeat {
        let dir = tmp.path().join(format!("plain-{rep}"));
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = Instant::now();
        std::fs::copy(&stored_file, dir.join("data.bin")).unwrap();
        plain.push(t0.elapsed());

        let target = Catalog::new(local(&tmp.path().join(format!("copy-{rep}"))));
        let t0 = Instant::now();
        let copy = source.copy_run(&run, &target).await.unwrap();
        to_local.push(t0.elapsed());
        assert_eq!(copy.bytes_copied, bytes);

        let s3 = S3Sink::builder(&t.bucket)
            .endpoint(&t.endpoint)
            .region(&t.region)
            .allow_http(true)
            .prefix(format!("bench-{rep}"))
            .credentials(S3Credentials::new(&t.access_key, &t.secret_key))
            .build()
            .unwrap();
        let target = Catalog::new(s3);
        let t0 = Instant::now();
        let copy = source.copy_run(&run, &target).await.unwrap();
        to_s3.push(t0.elapsed());
        assert_eq!(copy.bytes_copied, bytes);
        assert_eq!(copy.store_checked, 1);
        // The server's files of this repetition are not needed any more.
        for o in target.sink().list("runs").await.unwrap() {
            target.sink().delete(&o.key).await.unwrap();
        }
        let _ = std::fs::remove_dir_all(tmp.path().join(format!("copy-{rep}")));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (base, _, _) = median(plain.clone());
    println!(
        "{:<34} {:>10} {:>19} {:>10} {:>8}",
        "case", "median s", "min-max s", "MiB/s", "ratio"
    );
    for (name, times) in [
        ("plain file copy (std::fs::copy)", plain),
        ("copy_run local -> local", to_local),
        ("copy_run local -> S3 (s3s-fs)", to_s3),
    ] {
        let (m, lo, hi) = median(times);
        println!(
            "{name:<34} {:>10.3} {:>9.3}-{:<9.3} {:>10.1} {:>8.2}",
            m.as_secs_f64(),
            lo.as_secs_f64(),
            hi.as_secs_f64(),
            bytes as f64 / MIB as f64 / m.as_secs_f64(),
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
}

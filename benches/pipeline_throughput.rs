//! Streams generated data through hash + zstd(3) into the local sink.
//!
//! Reports throughput (criterion, 1 GiB per iteration) and peak RSS for a 1 GiB and a 4 GiB
//! run, with their ratio: memory must not grow with the artifact size. Each memory run
//! happens in a fresh child process (this binary, re-executed) so its peak is its own.
//!
//! Run: `cargo bench --bench pipeline_throughput` (release build; not part of CI).
//! `STOA_BENCH_SMALL=1` shrinks the sizes 16× for a quick smoke run.

use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use stoa_backup::core::{
    ArtifactPlan, Export, ExportContext, Pipeline, PreflightReport, Result, Source, ZstdCodec,
};
use stoa_backup::storage::LocalSink;

const GIB: u64 = 1 << 30;
const CHUNK: usize = 256 * 1024;

fn scale() -> u64 {
    if std::env::var_os("STOA_BENCH_SMALL").is_some() {
        16
    } else {
        1
    }
}

/// A source of `size` bytes of generated text: cheap to make, compressible about 2:1 like
/// real dumps, and without long repeats that would flatter zstd.
#[derive(Debug)]
struct GeneratedSource {
    size: u64,
}

#[async_trait]
impl Source for GeneratedSource {
    fn component(&self) -> &str {
        "generated"
    }
    fn provider(&self) -> &str {
        "bench"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan::new(
            "data.bin",
            "application/octet-stream",
        )])
    }
    async fn export(&self, _a: &ArtifactPlan, _c: &ExportContext) -> Result<Export> {
        let mut remaining = self.size;
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let stream = futures::stream::poll_fn(move |_cx| {
            if remaining == 0 {
                return std::task::Poll::Ready(None);
            }
            let n = remaining.min(CHUNK as u64) as usize;
            let mut buf = Vec::with_capacity(n);
            while buf.len() < n {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // 16 symbols per byte pair: ~4 bits of entropy per byte.
                for i in 0..8 {
                    buf.push(b"etaoin shrdlucmf"[((state >> (i * 4)) & 15) as usize]);
                }
            }
            buf.truncate(n);
            remaining -= n as u64;
            std::task::Poll::Ready(Some(Ok(Bytes::from(buf))))
        });
        Ok(Export::new(Box::pin(stream)))
    }
}

fn run_once(rt: &tokio::runtime::Runtime, size: u64) -> (f64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = Pipeline::builder()
        .source(GeneratedSource { size })
        .sink(LocalSink::new(dir.path()).expect("sink"))
        .compression(ZstdCodec::new(3).unwrap())
        .build()
        .unwrap();
    let t0 = Instant::now();
    let report = rt.block_on(pipeline.run()).unwrap().into_result().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(report.manifest.artifacts[0].plain_size, size);
    (secs, report.manifest.artifacts[0].stored_size)
}

mod support;

/// Child side: one run of `size` bytes in a fresh process.
fn memory_child(size: u64) {
    let rt = runtime();
    let (secs, stored) = run_once(&rt, size);
    drop(rt);
    support::report(std::time::Duration::from_secs_f64(secs), stored);
}

/// Each size runs in its own child process, so a run's peak RSS is its own; median of
/// `STOA_BENCH_REPEAT` (default 3) runs.
fn memory_report() {
    let mut peaks = Vec::new();
    for gib in [1u64, 4] {
        let size = gib * GIB / scale();
        let m = support::measure_median(&size.to_string(), &[], support::repeat());
        let peak = m.peak_rss.unwrap_or(0);
        println!(
            "memory: {:>5} MiB through hash+zstd(3)+local sink: {:>7.1} MB/s, stored {:.1}% of plain, peak RSS {:.1} MiB (median)",
            size >> 20,
            size as f64 / m.wall.as_secs_f64() / 1e6,
            m.stored as f64 * 100.0 / size as f64,
            peak as f64 / (1 << 20) as f64,
        );
        peaks.push(peak.max(1));
    }
    let ratio = peaks[1] as f64 / peaks[0] as f64;
    println!(
        "memory: peak RSS ratio {} MiB / {} MiB = {ratio:.3} (target: within 10%, i.e. <= 1.10) -> {}",
        (4 * GIB / scale()) >> 20,
        (GIB / scale()) >> 20,
        if ratio <= 1.10 { "OK" } else { "FAIL" }
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let size = GIB / scale();
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(size));
    group.bench_function("hash+zstd3+local 1GiB", |b| b.iter(|| run_once(&rt, size)));
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Some(size) = support::child_job() {
        return memory_child(size.parse().expect("size in bytes"));
    }
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}

//! Streaming zstd compression.

use async_compression::tokio::bufread::{ZstdDecoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use async_compression::Level;
use tokio::io::BufReader;

use super::Codec;
use crate::error::{Error, Result};
use crate::manifest::CodecStep;
use crate::stream::{from_reader, into_reader, ByteStream};

/// The level [`ZstdCodec::default`] compresses at.
///
/// Chosen from measurements on a 577 MB custom-format dump of STOA-like rows (jsonb
/// documents, non-ASCII text, uuids, random bytea; `benches/support/stoa_like.sql`), one core
/// of the 2-core benchmark machine, against `pg_dump -Z9` (182.3 MB):
///
/// | level | size | × `-Z9` | MB/s |
/// |---|---|---|---|
/// | 1 | 176.5 MB | 0.97 | 236 |
/// | **2** | **164.0 MB** | **0.90** | **223** |
/// | 3 | 162.1 MB | 0.89 | 185 |
///
/// Level 2 is within 1% of level 3's size at level 1's speed; level 1 saves little time
/// and gives up 7% of the size.
pub const DEFAULT_ZSTD_LEVEL: i32 = 2;

/// Most worker threads [`ZstdCodec::default`] uses: compression keeps up with a dump long
/// before this (one core compresses some 220 MB/s), and more would only take cores from the
/// database server and the rest of the pipeline.
const MAX_AUTO_WORKERS: u32 = 4;

/// zstd compression at a configurable level (1–22; [`DEFAULT_ZSTD_LEVEL`] by default), on
/// zstd's own worker threads where the machine has cores to spare ([`ZstdCodec::workers`]).
#[derive(Debug, Clone, Copy)]
pub struct ZstdCodec {
    level: i32,
    workers: Option<u32>,
}

impl ZstdCodec {
    /// Compression at `level` (1–22), with the default worker threads
    /// ([`ZstdCodec::workers`]).
    pub fn new(level: i32) -> Result<Self> {
        if !(1..=22).contains(&level) {
            return Err(Error::config(format!("zstd level {level} is out of range"))
                .with_component("codec/zstd")
                .with_hint(format!(
                    "use a level between 1 and 22 ({DEFAULT_ZSTD_LEVEL} is the default)"
                )));
        }
        Ok(ZstdCodec {
            level,
            workers: None,
        })
    }

    /// Compresses on `n` zstd worker threads beside the pipeline's own (0: on the pipeline's
    /// thread). The output is ordinary zstd, whatever the number of workers.
    ///
    /// By default, two fewer than the cores this process may use, at most 4: one core is
    /// left to the rest of the pipeline (the pipe from pg_dump, hashing, the inline check)
    /// and one to the source (pg_dump and, on the same machine, the database server's
    /// COPY). Workers only pay where a core is free: on the 2-core benchmark machine, one
    /// worker made a 577 MB PostgreSQL backup 10% slower (4.8 s against 4.4 s) and doubled
    /// its peak memory (31 MiB against 15 MiB), as zstd buffers a job of several MiB per
    /// worker; so 2 cores get none.
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = Some(n);
        self
    }

    /// The compression level.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// The worker threads this codec compresses on.
    pub fn worker_count(&self) -> u32 {
        self.workers.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            cores.saturating_sub(2).min(MAX_AUTO_WORKERS)
        })
    }
}

impl Default for ZstdCodec {
    fn default() -> Self {
        ZstdCodec {
            level: DEFAULT_ZSTD_LEVEL,
            workers: None,
        }
    }
}

impl Codec for ZstdCodec {
    fn step(&self) -> CodecStep {
        CodecStep::Zstd { level: self.level }
    }

    fn encode(&self, input: ByteStream) -> Result<ByteStream> {
        let reader = BufReader::with_capacity(crate::stream::CHUNK_SIZE, into_reader(input));
        let level = Level::Precise(self.level);
        let encoder = match self.worker_count() {
            0 => ZstdEncoder::with_quality(reader, level),
            n => ZstdEncoder::with_quality_and_params(reader, level, &[CParameter::nb_workers(n)]),
        };
        Ok(from_reader(encoder))
    }
}

/// Undoes zstd compression.
pub(crate) fn decode(input: ByteStream) -> ByteStream {
    let reader = BufReader::with_capacity(crate::stream::CHUNK_SIZE, into_reader(input));
    let mut dec = ZstdDecoder::new(reader);
    // Concatenated frames are valid zstd; accept them as zstd's own tool does.
    dec.multiple_members(true);
    super::decoded_stream(dec, "zstd", crate::error::ErrorKind::Integrity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_worker_count_writes_ordinary_zstd_that_decodes_to_the_input() {
        // Enough bytes for several zstd jobs, of mixed entropy.
        let mut input = Vec::new();
        for i in 0u32..400_000 {
            input.extend_from_slice(format!("row {i} tenant-{} ", i % 97).as_bytes());
            input.extend_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
        }
        for workers in [0, 1, 3] {
            let codec = ZstdCodec::default().workers(workers);
            let chunks: Vec<Result<bytes::Bytes>> = input
                .chunks(100_000)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            let encoded = crate::stream::collect(
                codec
                    .encode(Box::pin(futures::stream::iter(chunks)))
                    .unwrap(),
            )
            .await
            .unwrap();
            assert!(encoded.len() < input.len() / 2, "{workers} workers");
            let decoded = crate::stream::collect(decode(crate::stream::once(encoded)))
                .await
                .unwrap();
            assert!(decoded == input, "{workers} workers: round trip differs");
        }
    }

    #[test]
    fn the_default_leaves_a_core_to_the_pipeline_and_one_to_the_source() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let workers = ZstdCodec::default().worker_count();
        assert_eq!(workers, cores.saturating_sub(2).min(MAX_AUTO_WORKERS));
        assert_eq!(ZstdCodec::new(5).unwrap().workers(0).worker_count(), 0);
        assert_eq!(ZstdCodec::default().level(), DEFAULT_ZSTD_LEVEL);
    }
}

//! Streaming zstd compression.

use async_compression::tokio::bufread::{ZstdDecoder, ZstdEncoder};
use async_compression::Level;
use tokio::io::BufReader;

use super::Codec;
use crate::error::{Error, Result};
use crate::manifest::CodecStep;
use crate::stream::{from_reader, into_reader, ByteStream};

/// zstd compression at a configurable level (1–22; 3 is zstd's default and a good trade-off).
#[derive(Debug, Clone, Copy)]
pub struct ZstdCodec {
    level: i32,
}

impl ZstdCodec {
    /// Compression at `level` (1–22).
    pub fn new(level: i32) -> Result<Self> {
        if !(1..=22).contains(&level) {
            return Err(Error::config(format!("zstd level {level} is out of range"))
                .with_component("codec/zstd")
                .with_hint("use a level between 1 and 22 (3 is the usual choice)"));
        }
        Ok(ZstdCodec { level })
    }
}

impl Default for ZstdCodec {
    fn default() -> Self {
        ZstdCodec { level: 3 }
    }
}

impl Codec for ZstdCodec {
    fn step(&self) -> CodecStep {
        CodecStep::Zstd { level: self.level }
    }

    fn encode(&self, input: ByteStream) -> Result<ByteStream> {
        let reader = BufReader::with_capacity(crate::stream::CHUNK_SIZE, into_reader(input));
        Ok(from_reader(ZstdEncoder::with_quality(
            reader,
            Level::Precise(self.level),
        )))
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

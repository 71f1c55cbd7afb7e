//! Test data for the conformance suites: deterministic incompressible streams and their
//! digests.

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use stoa_backup_core::error::Result;
use stoa_backup_core::stream::ByteStream;

/// A deterministic, incompressible stream of `len` bytes in many odd-sized chunks.
pub fn pseudo_random_stream(seed: u64, len: u64) -> ByteStream {
    const CHUNKS: [u64; 6] = [65_536, 1, 100_003, 7, 262_144, 4_095];
    let state = (XorShift::new(seed), len, 0usize);
    Box::pin(futures::stream::unfold(
        state,
        |(mut rng, left, i)| async move {
            if left == 0 {
                return None;
            }
            let n = CHUNKS[i % CHUNKS.len()].min(left) as usize;
            let mut buf = vec![0u8; n];
            rng.fill(&mut buf);
            Some((Ok(Bytes::from(buf)), (rng, left - n as u64, i + 1)))
        },
    ))
}

/// The bytes [`pseudo_random_stream`] yields for `seed` and `len`, in one buffer.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    // Same chunk sizes as the stream, so the generator produces the same bytes.
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len);
    const CHUNKS: [usize; 6] = [65_536, 1, 100_003, 7, 262_144, 4_095];
    let mut i = 0;
    while out.len() < len {
        let n = CHUNKS[i % CHUNKS.len()].min(len - out.len());
        let start = out.len();
        out.resize(start + n, 0);
        rng.fill(&mut out[start..]);
        i += 1;
    }
    out
}

/// Reads a stream to its end; returns its size and SHA-256.
pub async fn sha256_of(mut s: ByteStream) -> Result<(u64, Vec<u8>)> {
    let mut h = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((size, h.finalize().to_vec()))
}

/// xorshift64*: fast, good enough that no codec or dedup can shrink its output.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf`; every chunk starts on a fresh word, so fills of the same lengths in the
    /// same order give the same bytes.
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let w = self.next_u64().to_le_bytes();
            c.copy_from_slice(&w[..c.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generator_is_deterministic_and_matches_bytes() {
        let a = stoa_backup_core::stream::collect(pseudo_random_stream(9, 500_000))
            .await
            .unwrap();
        let b = pseudo_random_bytes(9, 500_000);
        assert_eq!(a.len(), 500_000);
        assert!(a == b);
        assert!(a != pseudo_random_bytes(10, 500_000));
    }
}

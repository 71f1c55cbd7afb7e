//! The ETag check: on stores that are not known to verify `x-amz-checksum-sha256`, the
//! ETag the store computed is compared with the MD5s the sink computed of what it sent.
//!
//! S3-compatible stores (MinIO, Ceph RGW, s3s, moto, and AWS S3 itself for objects without
//! SSE-KMS or SSE-C) name an object stored with one `PutObject` by the MD5 of its body, and
//! one stored by multipart upload by the MD5 of its parts' MD5s followed by `-<parts>`: a
//! digest the store computed over the bytes it received. When it equals the one the sink
//! computed over the bytes it sent, every byte arrived as sent, and the pipeline need not
//! read the object back. When it differs (a changed body, or a store whose ETags are not
//! MD5s), nothing is claimed and the pipeline reads the object back as before: a mismatch is
//! never an error in itself.
//!
//! It costs one MD5 pass over the upload (about 0.7 GB/s per core), spent in the part tasks
//! beside the upload. It is skipped where it cannot help: on stores that verify the
//! checksums themselves ([`Checksums::may_claim`](super::checksum::Checksums)) and with
//! SSE-KMS, whose ETags are not MD5s.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use md5::{Digest, Md5};

/// In the extensions of a completed multipart upload: its ETag matched the MD5s of this
/// many parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EtagMatched(pub(super) u64);

/// The MD5 of a body handed over in pieces.
pub(super) fn md5_of<'a>(pieces: impl IntoIterator<Item = &'a Bytes>) -> [u8; 16] {
    let mut h = Md5::new();
    for p in pieces {
        h.update(p);
    }
    h.finalize().into()
}

/// Whether `etag` (as the store answered it, quoted or not) is the MD5 `md5`.
pub(super) fn single_matches(etag: Option<&str>, md5: &[u8; 16]) -> bool {
    etag.is_some_and(|e| unquote(e).eq_ignore_ascii_case(&hex(md5)))
}

/// The claim of a single `PutObject` whose ETag matched.
pub(super) fn single_claim() -> String {
    "the store's ETag of the single PutObject, the MD5 it computed of the body it received, \
     equals the MD5 of the body the sink sent"
        .to_string()
}

/// The claim of a multipart upload whose ETag matched.
pub(super) fn multipart_claim(parts: u64) -> String {
    format!(
        "the store's multipart ETag, the MD5 of the MD5s it computed of the {parts} parts it \
         received, equals the one of the parts the sink sent"
    )
}

fn unquote(etag: &str) -> &str {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"')
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MD5s of a multipart upload's parts, filled in by the part tasks in any order.
#[derive(Debug, Clone, Default)]
pub(super) struct PartMd5s(Arc<Mutex<Vec<Option<[u8; 16]>>>>);

impl PartMd5s {
    /// Room for the next part's MD5; returns its index.
    pub(super) fn next(&self) -> usize {
        let mut v = self.lock();
        v.push(None);
        v.len() - 1
    }

    pub(super) fn set(&self, index: usize, md5: [u8; 16]) {
        self.lock()[index] = Some(md5);
    }

    /// Whether `etag` is `md5(md5(part 1) ‖ … ‖ md5(part n))-n` of the parts recorded, all
    /// of them computed.
    pub(super) fn matches(&self, etag: Option<&str>) -> Option<u64> {
        let v = self.lock();
        let mut h = Md5::new();
        for md5 in v.iter() {
            h.update(md5.as_ref()?);
        }
        let n = v.len() as u64;
        let expected = format!("{}-{n}", hex(&h.finalize()));
        (n > 0 && etag.is_some_and(|e| unquote(e).eq_ignore_ascii_case(&expected))).then_some(n)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<[u8; 16]>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_etags_are_compared_as_md5_hex_quoted_or_not() {
        // MD5("abc")
        let md5 = md5_of([&Bytes::from_static(b"a"), &Bytes::from_static(b"bc")]);
        let hex = "900150983cd24fb0d6963f7d28e17f72";
        assert!(single_matches(Some(hex), &md5));
        assert!(single_matches(Some(&format!("\"{hex}\"")), &md5));
        assert!(single_matches(Some(&hex.to_uppercase()), &md5));
        assert!(!single_matches(
            Some("\"900150983cd24fb0d6963f7d28e17f73\""),
            &md5
        ));
        assert!(!single_matches(None, &md5));
    }

    #[test]
    fn multipart_etags_are_the_md5_of_the_part_md5s_and_their_count() {
        let parts = PartMd5s::default();
        let (a, b) = (parts.next(), parts.next());
        // Filled in out of order, as the part tasks finish.
        parts.set(b, md5_of([&Bytes::from_static(b"def")]));
        assert_eq!(parts.matches(Some("x-2")), None, "a part without its MD5");
        parts.set(a, md5_of([&Bytes::from_static(b"abc")]));
        let mut h = Md5::new();
        h.update(md5_of([&Bytes::from_static(b"abc")]));
        h.update(md5_of([&Bytes::from_static(b"def")]));
        let etag = format!("\"{}-2\"", hex(&h.finalize()));
        assert_eq!(parts.matches(Some(&etag)), Some(2));
        assert_eq!(parts.matches(Some(&etag.replace("-2", "-3"))), None);
        assert_eq!(parts.matches(None), None);
        assert_eq!(
            PartMd5s::default().matches(Some("d41d8cd98f00b204e9800998ecf8427e-0")),
            None
        );
    }
}

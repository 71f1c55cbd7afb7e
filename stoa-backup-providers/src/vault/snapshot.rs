//! Structural check of a raft snapshot: a complete gzip-compressed tar holding `meta.json`,
//! `state.bin`, `SHA256SUMS` and a non-empty `SHA256SUMS.sealed`, whose internal checksums
//! match. Vault sends `200` before streaming, so a snapshot that failed mid-way still looks
//! successful: this is the check the official client does, plus the checksums.

use std::collections::BTreeMap;
use std::io::{self, Read};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stoa_backup_core::codec::hash::hex;
use stoa_backup_core::stream::{into_reader, ByteStream};
use stoa_backup_core::{Error, Result};
use tokio::sync::mpsc;

/// What a valid snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Size of `state.bin` (the raft FSM state), bytes.
    pub state_bytes: u64,
    /// `meta.json` fields that tell where the snapshot comes from (index, term, version).
    pub meta: serde_json::Value,
    /// Size of `SHA256SUMS.sealed`.
    pub sealed_bytes: u64,
    /// Files whose checksum was checked.
    pub checked_files: Vec<String>,
}

const REQUIRED: [&str; 4] = ["meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"];

/// Checks a snapshot read from `reader` (the gzip bytes). Fails with an integrity error
/// naming what is wrong: truncated gzip or tar, a missing file, an empty
/// `SHA256SUMS.sealed`, or a checksum mismatch.
pub fn check_snapshot<R: Read>(reader: R) -> Result<SnapshotSummary> {
    let bad = |msg: String| {
        Error::integrity(msg).with_hint(
            "the snapshot is incomplete or damaged: take a new one (and check Vault's logs)",
        )
    };
    let io_bad = |e: io::Error, what: &str| {
        // Our own stream errors (e.g. a storage digest mismatch) pass through unchanged.
        if e.get_ref().is_some_and(|x| x.is::<Error>()) {
            return Error::from(e);
        }
        bad(format!("the snapshot is truncated or corrupt: {what}: {e}"))
    };
    let gz = flate2::read::GzDecoder::new(reader);
    let mut archive = tar::Archive::new(gz);
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut sums_text = String::new();
    let mut meta = serde_json::Value::Null;
    {
        let entries = archive
            .entries()
            .map_err(|e| io_bad(e, "not a tar archive"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| io_bad(e, "the archive is truncated or corrupt"))?;
            let name = entry
                .path()
                .map_err(|e| io_bad(e, "bad entry name"))?
                .to_string_lossy()
                .into_owned();
            let mut hasher = Sha256::new();
            let mut keep = Vec::new();
            let keep_body = name == "SHA256SUMS" || name == "meta.json";
            let mut buf = vec![0u8; 64 * 1024];
            let mut size = 0u64;
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| io_bad(e, &format!("reading {name} failed")))?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                hasher.update(&buf[..n]);
                if keep_body && keep.len() < 16 << 20 {
                    keep.extend_from_slice(&buf[..n]);
                }
            }
            if size != entry.size() {
                return Err(bad(format!("{name} is truncated")));
            }
            if name == "SHA256SUMS" {
                sums_text = String::from_utf8_lossy(&keep).into_owned();
            }
            if name == "meta.json" {
                meta = serde_json::from_slice(&keep)
                    .map_err(|e| bad(format!("meta.json is not JSON: {e}")))?;
            }
            hashes.insert(name.clone(), hex(&hasher.finalize()));
            sizes.insert(name, size);
        }
    }
    // Read the rest of the gzip stream: its trailer (CRC, size) proves it is complete.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| io_bad(e, "the gzip stream is truncated or corrupt"))?;

    for f in REQUIRED {
        if !hashes.contains_key(f) {
            return Err(bad(format!("the snapshot has no {f}")));
        }
    }
    let sealed_bytes = sizes["SHA256SUMS.sealed"];
    if sealed_bytes == 0 {
        return Err(bad(
            "SHA256SUMS.sealed is empty: the snapshot was not finished".to_string(),
        ));
    }
    let mut checked = Vec::new();
    for line in sums_text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(sum), Some(file)) = (parts.next(), parts.next()) else {
            return Err(bad(format!("malformed SHA256SUMS line {line:?}")));
        };
        let file = file.trim_start_matches('*');
        match hashes.get(file) {
            Some(h) if h.eq_ignore_ascii_case(sum) => checked.push(file.to_string()),
            Some(_) => {
                return Err(bad(format!(
                    "the checksum of {file} does not match SHA256SUMS"
                )))
            }
            None => return Err(bad(format!("SHA256SUMS lists {file}, which is missing"))),
        }
    }
    for f in ["meta.json", "state.bin"] {
        if !checked.iter().any(|c| c == f) {
            return Err(bad(format!("SHA256SUMS has no checksum for {f}")));
        }
    }
    let meta = match meta {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .filter(|(k, _)| matches!(k.as_str(), "ID" | "Index" | "Term" | "Version" | "Size"))
                .collect(),
        ),
        other => other,
    };
    Ok(SnapshotSummary {
        state_bytes: sizes["state.bin"],
        meta,
        sealed_bytes,
        checked_files: checked,
    })
}

/// Checks a snapshot arriving as a byte stream (on a blocking thread).
pub(crate) async fn check_snapshot_stream(stream: ByteStream) -> Result<SnapshotSummary> {
    let reader = tokio_util::io::SyncIoBridge::new(into_reader(stream));
    tokio::task::spawn_blocking(move || check_snapshot(reader))
        .await
        .map_err(|e| Error::internal(format!("the snapshot check panicked: {e}")))?
}

/// Passes `stream` through unchanged while a background check reads a copy; the returned
/// future yields the check's result once the stream has ended.
pub(crate) fn tee_check(
    stream: ByteStream,
) -> (
    ByteStream,
    impl std::future::Future<Output = Result<SnapshotSummary>> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<Result<Bytes>>(8);
    let copy: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let check = tokio::spawn(check_snapshot_stream(copy));
    let passthrough =
        futures::stream::unfold((stream, Some(tx)), |(mut stream, mut tx)| async move {
            let item = stream.next().await?;
            if let (Ok(b), Some(sender)) = (&item, &tx) {
                // If the checker already stopped (it failed), keep streaming: the failure is
                // reported by the returned future.
                if sender.send(Ok(b.clone())).await.is_err() {
                    tx = None;
                }
            }
            Some((item, (stream, tx)))
        });
    let fut = async move {
        check
            .await
            .map_err(|e| Error::internal(format!("the snapshot check panicked: {e}")))?
    };
    (Box::pin(passthrough), fut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(state: &[u8], sealed: &[u8], corrupt_sum: bool) -> Vec<u8> {
        let meta = br#"{"ID":"2-10-1717000000","Index":10,"Term":2,"Version":1}"#;
        let mut sums = format!(
            "{}  meta.json\n{}  state.bin\n",
            hex(&Sha256::digest(meta)),
            hex(&Sha256::digest(state))
        );
        if corrupt_sum {
            let first = if sums.starts_with('0') { "1" } else { "0" };
            sums.replace_range(0..1, first);
        }
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, data) in [
            ("meta.json", &meta[..]),
            ("state.bin", state),
            ("SHA256SUMS", sums.as_bytes()),
            ("SHA256SUMS.sealed", sealed),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn accepts_a_complete_snapshot() {
        let a = archive(&[7u8; 100_000], b"sealed", false);
        let s = check_snapshot(&a[..]).unwrap();
        assert_eq!(s.state_bytes, 100_000);
        assert_eq!(s.checked_files, vec!["meta.json", "state.bin"]);
    }

    #[test]
    fn rejects_truncated_empty_sealed_and_bad_sums() {
        let a = archive(&[7u8; 100_000], b"sealed", false);
        for cut in [10, a.len() / 2, a.len() - 4] {
            let e = check_snapshot(&a[..cut]).unwrap_err();
            assert_eq!(e.kind(), stoa_backup_core::ErrorKind::Integrity, "{e}");
        }
        let e = check_snapshot(&archive(b"x", b"", false)[..]).unwrap_err();
        assert!(e.message().contains("SHA256SUMS.sealed is empty"), "{e}");
        let e = check_snapshot(&archive(b"xyz", b"s", true)[..]).unwrap_err();
        assert!(e.message().contains("does not match"), "{e}");
    }
}

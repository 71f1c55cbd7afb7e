//! Raft snapshots of the fake: a gzip tar with valid internal checksums and a sealed hash
//! list, and the check of a posted snapshot.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::http::Body;
use super::State;

pub(super) fn snapshot_of(s: &mut State) -> Bytes {
    if s.snapshot.is_none() {
        s.snapshot = Some(Bytes::from(build_snapshot(
            s.snapshot_size,
            &s.seal_key,
            false,
        )));
    }
    s.snapshot.clone().expect("set above")
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn seal(seal_key: &str, sums: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(seal_key.as_bytes());
    h.update(sums);
    format!("fake-seal:v1:{}", hex(&h.finalize())).into_bytes()
}

/// A raft snapshot: gzip tar of `meta.json`, `state.bin`, `SHA256SUMS`, `SHA256SUMS.sealed`.
pub(super) fn build_snapshot(state_size: usize, seal_key: &str, empty_seal: bool) -> Vec<u8> {
    let meta = br#"{"Version":1,"ID":"2-1042-1717000000000","Index":1042,"Term":2,"Peers":"ka8xMjcuMC4wLjE6ODIwMQ==","Configuration":{"Servers":[{"Suffrage":0,"ID":"vault-0","Address":"127.0.0.1:8201"}]},"ConfigurationIndex":1,"Size":0}"#;
    // Three quarters pseudo-random, a quarter repetitive: realistic-ish compressibility, deterministic.
    let mut state = Vec::with_capacity(state_size);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while state.len() < state_size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if state.len() % 4096 < 3072 {
            state.extend_from_slice(&x.to_le_bytes());
        } else {
            state.extend_from_slice(b"kv/entry");
        }
    }
    state.truncate(state_size);
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        hex(&Sha256::digest(meta)),
        hex(&Sha256::digest(&state))
    );
    let sealed = if empty_seal {
        Vec::new()
    } else {
        seal(seal_key, sums.as_bytes())
    };
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in [
        ("meta.json", &meta[..]),
        ("state.bin", &state[..]),
        ("SHA256SUMS", sums.as_bytes()),
        ("SHA256SUMS.sealed", &sealed[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(1_717_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("tar append");
    }
    let mut gz = b.into_inner().expect("tar finish");
    gz.flush().expect("flush");
    gz.finish().expect("gzip finish")
}

/// Checks a posted snapshot: `Ok(sealed_ok)` or an error message.
pub(super) fn check_posted(bytes: &[u8], seal_key: &str) -> Result<bool, String> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut ar = tar::Archive::new(gz);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for e in ar.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let name = e
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        files.insert(name, buf);
    }
    let sums = files.get("SHA256SUMS").ok_or("missing SHA256SUMS")?;
    let sealed = files
        .get("SHA256SUMS.sealed")
        .ok_or("missing SHA256SUMS.sealed")?;
    if sealed.is_empty() {
        return Err("empty sealed hash file".into());
    }
    for line in String::from_utf8_lossy(sums).lines() {
        let mut p = line.split_whitespace();
        let (Some(h), Some(f)) = (p.next(), p.next()) else {
            return Err("bad hash file".into());
        };
        let data = files.get(f).ok_or("missing file")?;
        if hex(&Sha256::digest(data)) != h {
            return Err(format!("checksum mismatch for {f}"));
        }
    }
    Ok(*sealed == seal(seal_key, sums))
}

pub(super) fn snapshot_response(b: Bytes) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/gzip")
        .body(Full::new(b))
        .expect("response")
}

/// One level of keys under `prefix` (folders with a trailing `/`), sorted.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_check_out() {
        let b = build_snapshot(100_000, "k", false);
        assert_eq!(check_posted(&b, "k"), Ok(true));
        assert_eq!(check_posted(&b, "other"), Ok(false));
        assert!(check_posted(&b[..b.len() / 2], "k").is_err());
    }
}

//! A reader of pg_dump's custom-format header and table of contents.
//!
//! The layout follows `WriteHead`/`WriteToc` in PostgreSQL's `pg_backup_archiver.c`:
//! `PGDMP`, version bytes (major, minor, revision), integer size, offset size, format byte,
//! then the compression (an integer before archive version 1.15, an algorithm byte from
//! 1.15), the creation time as seven integers, the database name, the server and pg_dump
//! versions, and the TOC: an entry count followed by the entries. Integers are a sign byte
//! followed by `intSize` bytes, least significant first; strings are an integer length
//! (`-1` for NULL) followed by the bytes.
//!
//! [`DumpInspector`] reads this from a stream as it passes, keeping only the entry being
//! parsed in memory, so the source can record the TOC entry count and the tables whose
//! data the dump holds without a second pass over the bytes.

use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use stoa_backup_core::stream::ByteStream;
use tokio::sync::watch;

/// Data-offset state of a TOC entry whose data block was written where the offset could not
/// be recorded (pg_dump writing to a pipe).
pub const OFFSET_NOT_SET: u8 = 1;
/// Data-offset state of a TOC entry whose offset is recorded: readers may seek to its block.
pub const OFFSET_SET: u8 = 2;

/// Archive format byte of the custom format.
pub const FORMAT_CUSTOM: u8 = 1;

/// Oldest archive version whose TOC this reader understands (PostgreSQL 9.x and later).
pub const MIN_VERSION: (u8, u8, u8) = (1, 12, 0);
/// Newest archive version whose TOC this reader understands (PostgreSQL 17).
pub const MAX_VERSION: (u8, u8, u8) = (1, 16, 255);

/// How the data blocks of a dump are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpCompression {
    /// Not compressed (`-Z0`).
    None,
    /// gzip, with its level when the archive records one (`None` = library default).
    Gzip(Option<i64>),
    /// lz4 (archive 1.15+).
    Lz4,
    /// zstd (archive 1.15+).
    Zstd,
    /// A value this reader does not know.
    Unknown(i64),
}

impl fmt::Display for DumpCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpCompression::None => f.write_str("none"),
            DumpCompression::Gzip(Some(l)) => write!(f, "gzip:{l}"),
            DumpCompression::Gzip(None) => f.write_str("gzip"),
            DumpCompression::Lz4 => f.write_str("lz4"),
            DumpCompression::Zstd => f.write_str("zstd"),
            DumpCompression::Unknown(v) => write!(f, "unknown({v})"),
        }
    }
}

/// The header of a custom-format dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpHeader {
    /// Archive version (major, minor, revision), e.g. `(1, 14, 0)` for pg_dump 12–15.
    pub version: (u8, u8, u8),
    /// Size of integers in bytes.
    pub int_size: u8,
    /// Size of file offsets in bytes.
    pub off_size: u8,
    /// Archive format byte (1 = custom).
    pub format: u8,
    /// Compression of the data blocks.
    pub compression: DumpCompression,
    /// Creation time as written by pg_dump (local time of the dumping host):
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created: String,
    /// Name of the dumped database.
    pub dbname: Option<String>,
    /// Version string of the server the dump was taken from.
    pub server_version: Option<String>,
    /// Version string of the pg_dump that wrote it.
    pub pg_dump_version: Option<String>,
    /// Number of TOC entries (what `pg_restore --list` reports as "TOC Entries").
    pub toc_entries: u64,
}

impl DumpHeader {
    /// The archive version as `1.14-0`, like `pg_restore --list` prints it.
    pub fn version_string(&self) -> String {
        format!("{}.{}-{}", self.version.0, self.version.1, self.version.2)
    }
}

/// One TOC entry, reduced to what stoa-backup uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    /// pg_dump's id of the entry.
    pub dump_id: i64,
    /// Kind of object (`TABLE`, `TABLE DATA`, `SEQUENCE SET`, …).
    pub desc: String,
    /// Schema, when the object has one.
    pub namespace: Option<String>,
    /// Object name.
    pub tag: Option<String>,
}

/// What the inspector learned from a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSummary {
    /// The header.
    pub header: DumpHeader,
    /// Tables whose data is in the dump, as `(schema, table)`, in TOC order.
    pub table_data: Vec<(String, String)>,
    /// Number of entries actually parsed (equals `header.toc_entries` for a whole TOC).
    pub parsed_entries: u64,
}

/// Why the header or TOC could not be read. Callers turn it into an integrity
/// [`Error`](stoa_backup_core::Error) with this as its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// More bytes are needed.
    #[error("the dump ends inside its header or table of contents")]
    NeedMore,
    /// The bytes are not a custom-format pg_dump archive, or are damaged.
    #[error("not a valid custom-format dump: {0}")]
    Invalid(String),
    /// A custom-format archive of a version this reader does not understand.
    #[error("unsupported dump: {0}")]
    Unsupported(String),
}

type PResult<T> = std::result::Result<T, ParseError>;

fn ver(v: (u8, u8, u8)) -> u32 {
    ((v.0 as u32) << 16) | ((v.1 as u32) << 8) | v.2 as u32
}

/// A dump integer at the start of `buf` (a sign byte, then `int_size` bytes least
/// significant first), if `buf` holds all of it.
pub(crate) fn read_int(buf: &[u8], int_size: u8) -> Option<i64> {
    let n = int_size as usize;
    let raw = buf.get(1..=n)?;
    let v = raw
        .iter()
        .enumerate()
        .fold(0i64, |v, (i, b)| v | ((*b as i64) << (8 * i)));
    Some(if buf[0] != 0 { -v } else { v })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    int_size: usize,
}

/// Longest string we accept in a header or TOC (a sanity limit against garbage lengths).
const MAX_STRING: i64 = 256 * 1024 * 1024;

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> PResult<u8> {
        let b = *self.buf.get(self.pos).ok_or(ParseError::NeedMore)?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> PResult<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(ParseError::NeedMore);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn int(&mut self) -> PResult<i64> {
        let v = read_int(&self.buf[self.pos..], self.int_size as u8).ok_or(ParseError::NeedMore)?;
        self.pos += 1 + self.int_size;
        Ok(v)
    }

    fn string(&mut self) -> PResult<Option<String>> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        if len > MAX_STRING {
            return Err(ParseError::Invalid(format!(
                "string length {len} is implausible"
            )));
        }
        let b = self.bytes(len as usize)?;
        Ok(Some(String::from_utf8_lossy(b).into_owned()))
    }

    fn skip_string(&mut self) -> PResult<()> {
        let len = self.int()?;
        if len > MAX_STRING {
            return Err(ParseError::Invalid(format!(
                "string length {len} is implausible"
            )));
        }
        if len > 0 {
            self.bytes(len as usize)?;
        }
        Ok(())
    }
}

/// Parses the header at the start of `buf`; returns it and the bytes it took.
pub fn parse_header(buf: &[u8]) -> PResult<(DumpHeader, usize)> {
    let probe = &buf[..buf.len().min(5)];
    if probe != &b"PGDMP"[..probe.len()] {
        return Err(ParseError::Invalid(
            "it does not start with PGDMP (is it a plain SQL or tar dump?)".into(),
        ));
    }
    let mut c = Cursor {
        buf,
        pos: 0,
        int_size: 4,
    };
    c.bytes(5)?;
    let version = (c.byte()?, c.byte()?, c.byte()?);
    if ver(version) < ver(MIN_VERSION) || ver(version) > ver(MAX_VERSION) {
        return Err(ParseError::Unsupported(format!(
            "archive version {}.{}-{} (this reader knows {}.{} to {}.{})",
            version.0,
            version.1,
            version.2,
            MIN_VERSION.0,
            MIN_VERSION.1,
            MAX_VERSION.0,
            MAX_VERSION.1
        )));
    }
    let int_size = c.byte()?;
    let off_size = c.byte()?;
    if !(1..=8).contains(&int_size) || !(1..=8).contains(&off_size) {
        return Err(ParseError::Invalid(format!(
            "integer size {int_size} / offset size {off_size}"
        )));
    }
    c.int_size = int_size as usize;
    let format = c.byte()?;
    if format != FORMAT_CUSTOM {
        return Err(ParseError::Unsupported(format!(
            "archive format {format} is not the custom format (1)"
        )));
    }
    let compression = if ver(version) >= ver((1, 15, 0)) {
        match c.byte()? {
            0 => DumpCompression::None,
            1 => DumpCompression::Gzip(None),
            2 => DumpCompression::Lz4,
            3 => DumpCompression::Zstd,
            other => DumpCompression::Unknown(other as i64),
        }
    } else {
        match c.int()? {
            0 => DumpCompression::None,
            -1 => DumpCompression::Gzip(None),
            l @ 1..=9 => DumpCompression::Gzip(Some(l)),
            other => DumpCompression::Unknown(other),
        }
    };
    let mut tm = [0i64; 7];
    for v in tm.iter_mut() {
        *v = c.int()?;
    }
    let created = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm[5] + 1900,
        tm[4] + 1,
        tm[3],
        tm[2],
        tm[1],
        tm[0]
    );
    let dbname = c.string()?;
    let server_version = c.string()?;
    let pg_dump_version = c.string()?;
    let count = c.int()?;
    if count < 0 {
        return Err(ParseError::Invalid(format!(
            "negative TOC entry count {count}"
        )));
    }
    Ok((
        DumpHeader {
            version,
            int_size,
            off_size,
            format,
            compression,
            created,
            dbname,
            server_version,
            pg_dump_version,
            toc_entries: count as u64,
        },
        c.pos,
    ))
}

/// Parses one TOC entry at the start of `buf`; returns it and the bytes it took. Its last
/// `1 + off_size` bytes are the entry's data offset: a state byte ([`OFFSET_NOT_SET`],
/// [`OFFSET_SET`], or 3 for an entry without data) and the offset, least significant byte
/// first.
pub(crate) fn parse_entry(buf: &[u8], h: &DumpHeader) -> PResult<(TocEntry, usize)> {
    let v = ver(h.version);
    let mut c = Cursor {
        buf,
        pos: 0,
        int_size: h.int_size as usize,
    };
    let dump_id = c.int()?;
    if dump_id <= 0 {
        return Err(ParseError::Invalid(format!(
            "TOC entry id {dump_id} out of range"
        )));
    }
    let _had_dumper = c.int()?;
    c.skip_string()?; // table oid
    c.skip_string()?; // oid
    let tag = c.string()?;
    let desc = c.string()?.unwrap_or_default();
    let _section = c.int()?;
    c.skip_string()?; // defn
    c.skip_string()?; // drop statement
    c.skip_string()?; // copy statement
    let namespace = c.string()?;
    c.skip_string()?; // tablespace
    if v >= ver((1, 14, 0)) {
        c.skip_string()?; // table access method
    }
    if v >= ver((1, 16, 0)) {
        c.int()?; // relkind
    }
    c.skip_string()?; // owner
    c.skip_string()?; // "false" (with oids)
                      // Dependencies: strings until a NULL.
    loop {
        let len = c.int()?;
        if len < 0 {
            break;
        }
        if len > MAX_STRING {
            return Err(ParseError::Invalid(
                "dependency string length is implausible".into(),
            ));
        }
        c.bytes(len as usize)?;
    }
    // Custom format: data offset (flag byte + offSize bytes).
    c.byte()?;
    c.bytes(h.off_size as usize)?;
    Ok((
        TocEntry {
            dump_id,
            desc,
            namespace,
            tag,
        },
        c.pos,
    ))
}

enum Phase {
    Header,
    Toc {
        header: DumpHeader,
        remaining: u64,
        tables: Vec<(String, String)>,
        parsed: u64,
    },
    Done,
}

/// Outcome of inspecting a dump stream.
pub type InspectResult = std::result::Result<Arc<DumpSummary>, ParseError>;

/// Incremental reader of a dump's header and TOC.
pub struct DumpInspector {
    buf: Vec<u8>,
    phase: Phase,
    tx: watch::Sender<Option<InspectResult>>,
}

impl fmt::Debug for DumpInspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DumpInspector")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl DumpInspector {
    /// A new inspector and a receiver that gets its result once the TOC is read (or
    /// reading failed).
    pub fn new() -> (Self, watch::Receiver<Option<InspectResult>>) {
        let (tx, rx) = watch::channel(None);
        (
            DumpInspector {
                buf: Vec::new(),
                phase: Phase::Header,
                tx,
            },
            rx,
        )
    }

    fn finish(&mut self, r: InspectResult) {
        self.phase = Phase::Done;
        self.buf = Vec::new();
        self.tx.send_replace(Some(r));
    }

    /// Feeds the next bytes of the dump.
    pub fn feed(&mut self, chunk: &[u8]) {
        if matches!(self.phase, Phase::Done) {
            return;
        }
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            match &mut self.phase {
                Phase::Done => return,
                Phase::Header => match parse_header(&self.buf[pos..]) {
                    Ok((header, n)) => {
                        pos += n;
                        let remaining = header.toc_entries;
                        self.phase = Phase::Toc {
                            header,
                            remaining,
                            tables: Vec::new(),
                            parsed: 0,
                        };
                    }
                    Err(ParseError::NeedMore) => break,
                    Err(e) => return self.finish(Err(e)),
                },
                Phase::Toc {
                    header,
                    remaining,
                    tables,
                    parsed,
                } => {
                    if *remaining == 0 {
                        let summary = DumpSummary {
                            header: header.clone(),
                            table_data: std::mem::take(tables),
                            parsed_entries: *parsed,
                        };
                        return self.finish(Ok(Arc::new(summary)));
                    }
                    match parse_entry(&self.buf[pos..], header) {
                        Ok((entry, n)) => {
                            pos += n;
                            *remaining -= 1;
                            *parsed += 1;
                            if entry.desc == "TABLE DATA" {
                                if let (Some(ns), Some(tag)) = (entry.namespace, entry.tag) {
                                    tables.push((ns, tag));
                                }
                            }
                        }
                        Err(ParseError::NeedMore) => break,
                        Err(e) => return self.finish(Err(e)),
                    }
                }
            }
        }
        self.buf.drain(..pos);
    }

    /// Marks the end of the stream: a header or TOC still incomplete is an error.
    pub fn end(&mut self) {
        if !matches!(self.phase, Phase::Done) {
            self.finish(Err(ParseError::NeedMore));
        }
    }
}

/// Passes `stream` through unchanged while reading the dump header and TOC from it.
pub fn inspect(stream: ByteStream) -> (ByteStream, watch::Receiver<Option<InspectResult>>) {
    let (inspector, rx) = DumpInspector::new();
    let inspector = Arc::new(Mutex::new(inspector));
    let on_chunk = inspector.clone();
    let passed = stream.map(move |item: stoa_backup_core::Result<Bytes>| {
        if let Ok(chunk) = &item {
            on_chunk.lock().expect("inspector lock").feed(chunk);
        }
        item
    });
    let tail = futures::stream::once(async move {
        inspector.lock().expect("inspector lock").end();
        None
    })
    .filter_map(|x: Option<stoa_backup_core::Result<Bytes>>| async move { x });
    (Box::pin(passed.chain(tail)), rx)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A dump integer (4 bytes after the sign byte), for synthetic archives.
    pub(crate) fn put_int(out: &mut Vec<u8>, v: i64) {
        out.push(if v < 0 { 1 } else { 0 });
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
    }

    /// A dump string (`None`: NULL), for synthetic archives.
    pub(crate) fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => put_int(out, -1),
            Some(s) => {
                put_int(out, s.len() as i64);
                out.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// A synthetic archive in the 1.14 layout with one TABLE and one TABLE DATA entry.
    fn synthetic(version: (u8, u8, u8)) -> Vec<u8> {
        let mut b = b"PGDMP".to_vec();
        b.extend_from_slice(&[version.0, version.1, version.2, 4, 8, 1]);
        if version.1 >= 15 {
            b.push(3);
        } else {
            put_int(&mut b, 0);
        }
        for v in [5, 4, 3, 24, 10, 126, 0] {
            put_int(&mut b, v);
        }
        put_str(&mut b, Some("stoa"));
        put_str(&mut b, Some("15.20"));
        put_str(&mut b, Some("15.20"));
        put_int(&mut b, 2);
        for (id, desc) in [(1, "TABLE"), (2, "TABLE DATA")] {
            put_int(&mut b, id);
            put_int(&mut b, 0);
            put_str(&mut b, Some("1259"));
            put_str(&mut b, Some("16384"));
            put_str(&mut b, Some("tenants"));
            put_str(&mut b, Some(desc));
            put_int(&mut b, 2);
            put_str(&mut b, Some("CREATE TABLE x ();"));
            put_str(&mut b, None);
            put_str(&mut b, None);
            put_str(&mut b, Some("stoa"));
            put_str(&mut b, Some(""));
            put_str(&mut b, Some("heap"));
            if version.1 >= 16 {
                put_int(&mut b, 'r' as i64);
            }
            put_str(&mut b, Some("postgres"));
            put_str(&mut b, Some("false"));
            put_str(&mut b, Some("1"));
            put_str(&mut b, None);
            b.push(1);
            b.extend_from_slice(&[0; 8]);
        }
        b.extend_from_slice(b"data blocks follow");
        b
    }

    #[test]
    fn reads_header_and_toc_byte_by_byte() {
        for version in [(1, 14, 0), (1, 15, 0), (1, 16, 0)] {
            let bytes = synthetic(version);
            let (mut ins, rx) = DumpInspector::new();
            for b in &bytes {
                ins.feed(std::slice::from_ref(b));
            }
            ins.end();
            let s = rx.borrow().clone().unwrap().unwrap();
            assert_eq!(s.header.toc_entries, 2);
            assert_eq!(s.parsed_entries, 2);
            assert_eq!(s.header.dbname.as_deref(), Some("stoa"));
            assert_eq!(s.header.created, "2026-11-24 03:04:05");
            assert_eq!(
                s.table_data,
                vec![("stoa".to_string(), "tenants".to_string())]
            );
            let expected = if version.1 >= 15 {
                DumpCompression::Zstd
            } else {
                DumpCompression::None
            };
            assert_eq!(s.header.compression, expected);
        }
    }

    #[test]
    fn garbage_and_truncation_are_reported() {
        let (mut ins, rx) = DumpInspector::new();
        ins.feed(b"-- PostgreSQL database dump\n");
        assert!(matches!(
            rx.borrow().clone(),
            Some(Err(ParseError::Invalid(_)))
        ));

        let bytes = synthetic((1, 14, 0));
        let (mut ins, rx) = DumpInspector::new();
        ins.feed(&bytes[..60]);
        ins.end();
        assert_eq!(rx.borrow().clone(), Some(Err(ParseError::NeedMore)));

        let mut newer = synthetic((1, 14, 0));
        newer[6] = 99;
        assert!(matches!(
            parse_header(&newer),
            Err(ParseError::Unsupported(_))
        ));
    }
}

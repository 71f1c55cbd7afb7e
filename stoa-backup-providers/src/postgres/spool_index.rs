//! Data offsets for a dump written to a file from a stream, so a parallel `pg_restore` can
//! seek to each block.
//!
//! pg_dump writing to a pipe cannot go back to record where each data block starts: every
//! TOC entry with data says "offset not set", and each `pg_restore --jobs` worker then reads
//! the archive from the start to find its block. pg_dump writing to a file rewrites the TOC
//! with the offsets at the end. [`SpoolIndex`] does the same for the spool file of a
//! parallel restore: it reads the TOC and walks the data blocks as the bytes are written
//! (their layout is `_StartData`/`_EndData` and `_StartLOs`/`_EndLOs` in PostgreSQL's
//! `pg_backup_custom.c`: a block type byte, the dump id, then length-prefixed chunks up to
//! a zero length; large-object blocks hold, per object, its oid and such chunks, up to a
//! zero oid), then writes each entry's offset into the file.

use std::collections::HashMap;

use super::dump_header::{
    parse_entry, parse_header, read_int, DumpHeader, ParseError, OFFSET_NOT_SET, OFFSET_SET,
};

/// Block type of table data.
const BLK_DATA: u8 = 1;
/// Block type of large objects.
const BLK_BLOBS: u8 = 3;

/// Where the walk through the data blocks is.
#[derive(Debug, Clone, Copy)]
enum Walk {
    /// At a block's type byte (or the end of the archive).
    BlockStart,
    /// The dump id after the type byte.
    BlockId { blobs: bool },
    /// A chunk length; `blobs` when inside a large object.
    ChunkLen { blobs: bool },
    /// Inside a chunk, with this many bytes left.
    Chunk { left: u64, blobs: bool },
    /// A large object's oid (zero ends the block).
    BlobOid,
}

/// Where one data block lies in the dump stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpan {
    /// The dump id of the TOC entry the block holds the data of.
    pub dump_id: i64,
    /// Stream position of its type byte (where a reader seeks to).
    pub start: u64,
    /// Stream position just past its end, once the whole block has been fed.
    pub end: Option<u64>,
}

/// Reads a dump as it is spooled and records where its TOC entries' offsets and its data
/// blocks are.
/// Feed it every byte of a custom-format dump in order ([`SpoolIndex::feed`]), write the
/// same bytes to a file, then write [`SpoolIndex::patches`] into that file
/// ([`write_patches`]): the file then records each data block's offset, as a dump that
/// pg_dump wrote to a file itself does.
#[derive(Debug, Default)]
pub struct SpoolIndex {
    /// Bytes not parsed yet (a header, a TOC entry or an integer cut between chunks).
    pending: Vec<u8>,
    /// Stream position of `pending[0]`.
    base: u64,
    header: Option<DumpHeader>,
    toc_left: Option<u64>,
    /// Per TOC entry with an unset offset: its dump id and the position of its state byte.
    unset: Vec<(i64, u64)>,
    /// The dump ids of the TOC entries that have a data block (offset set or not), in order.
    with_data: Vec<i64>,
    walk: Option<Walk>,
    /// The TOC entries, in order: dump id and kind (`TABLE DATA`, …).
    entries: Vec<(i64, String)>,
    /// Stream position where the TOC ends and the first data block starts.
    toc_end: Option<u64>,
    /// The data blocks seen so far, in stream order.
    spans: Vec<BlockSpan>,
    /// Why indexing stopped, if it did: the spool is then left as it is.
    failed: Option<String>,
}

impl SpoolIndex {
    /// The TOC entries (dump id and kind, such as `TABLE DATA`), in TOC order, once the whole
    /// TOC has been fed.
    pub fn entries(&self) -> Option<&[(i64, String)]> {
        self.toc_end.map(|_| self.entries.as_slice())
    }

    /// Stream position where the TOC ends (the header and TOC are the bytes before it), once
    /// it has been fed.
    pub fn toc_end(&self) -> Option<u64> {
        self.toc_end
    }

    /// The data blocks seen so far, in stream order; the last one may still be open.
    pub fn blocks(&self) -> &[BlockSpan] {
        &self.spans
    }

    /// Why indexing stopped, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Feeds the next bytes of the dump, in order. Only what cannot be parsed yet (a header,
    /// a TOC entry or an integer cut between chunks) is kept.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let parsed = if self.pending.is_empty() {
            self.parse(chunk).map(|used| chunk[used..].to_vec())
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(chunk);
            self.parse(&buf).map(|used| buf[used..].to_vec())
        };
        match parsed {
            Ok(rest) => self.pending = rest,
            Err(why) => {
                self.failed = Some(why);
                self.pending = Vec::new();
            }
        }
    }

    /// Parses `all` (which starts at stream position `self.base`); returns the bytes used
    /// and moves `base` past them.
    fn parse(&mut self, all: &[u8]) -> Result<usize, String> {
        let used = self.parse_from(all)?;
        self.base += used as u64;
        Ok(used)
    }

    fn parse_from(&mut self, all: &[u8]) -> Result<usize, String> {
        let mut pos = 0usize;
        loop {
            let buf = &all[pos..];
            let Some(header) = &self.header else {
                match parse_header(buf) {
                    Ok((h, n)) => {
                        self.toc_left = Some(h.toc_entries);
                        pos += n;
                        if h.toc_entries == 0 {
                            self.toc_end = Some(self.base + pos as u64);
                            self.walk = Some(Walk::BlockStart);
                        }
                        self.header = Some(h);
                        continue;
                    }
                    Err(ParseError::NeedMore) => return Ok(pos),
                    Err(e) => return Err(e.to_string()),
                }
            };
            if self.toc_left != Some(0) {
                match parse_entry(buf, header) {
                    Ok((entry, n)) => {
                        let state_at = n - 1 - header.off_size as usize;
                        if buf[state_at] == OFFSET_NOT_SET {
                            self.unset
                                .push((entry.dump_id, self.base + (pos + state_at) as u64));
                        }
                        if matches!(buf[state_at], OFFSET_NOT_SET | OFFSET_SET) {
                            self.with_data.push(entry.dump_id);
                        }
                        self.toc_left = self.toc_left.map(|l| l - 1);
                        pos += n;
                        self.entries.push((entry.dump_id, entry.desc));
                        if self.toc_left == Some(0) {
                            self.toc_end = Some(self.base + pos as u64);
                            self.walk = Some(Walk::BlockStart);
                        }
                        continue;
                    }
                    Err(ParseError::NeedMore) => return Ok(pos),
                    Err(e) => return Err(e.to_string()),
                }
            }
            let int_len = 1 + header.int_size as usize;
            let walk = self.walk.unwrap_or(Walk::BlockStart);
            match walk {
                Walk::BlockStart => {
                    let Some(&kind) = buf.first() else {
                        return Ok(pos);
                    };
                    let blobs = match kind {
                        BLK_DATA => false,
                        BLK_BLOBS => true,
                        other => return Err(format!("unknown block type {other}")),
                    };
                    // Recorded once the id is read; the type byte is where readers seek.
                    self.walk = Some(Walk::BlockId { blobs });
                    pos += 1;
                }
                Walk::BlockId { blobs } => {
                    let Some(id) = read_int(buf, header.int_size) else {
                        return Ok(pos);
                    };
                    let start = self.base + pos as u64 - 1;
                    self.spans.push(BlockSpan {
                        dump_id: id,
                        start,
                        end: None,
                    });
                    self.walk = Some(if blobs {
                        Walk::BlobOid
                    } else {
                        Walk::ChunkLen { blobs }
                    });
                    pos += int_len;
                }
                Walk::ChunkLen { blobs } => {
                    let Some(len) = read_int(buf, header.int_size) else {
                        return Ok(pos);
                    };
                    if len < 0 {
                        return Err(format!("negative chunk length {len}"));
                    }
                    pos += int_len;
                    if (len, blobs) == (0, false) {
                        self.end_block(pos);
                    }
                    self.walk = Some(match (len, blobs) {
                        (0, false) => Walk::BlockStart,
                        (0, true) => Walk::BlobOid,
                        (n, blobs) => Walk::Chunk {
                            left: n as u64,
                            blobs,
                        },
                    });
                }
                Walk::Chunk { left, blobs } => {
                    let take = (buf.len() as u64).min(left);
                    pos += take as usize;
                    if take < left {
                        self.walk = Some(Walk::Chunk {
                            left: left - take,
                            blobs,
                        });
                        return Ok(pos);
                    }
                    self.walk = Some(Walk::ChunkLen { blobs });
                }
                Walk::BlobOid => {
                    let Some(oid) = read_int(buf, header.int_size) else {
                        return Ok(pos);
                    };
                    pos += int_len;
                    if oid == 0 {
                        self.end_block(pos);
                    }
                    self.walk = Some(if oid == 0 {
                        Walk::BlockStart
                    } else {
                        Walk::ChunkLen { blobs: true }
                    });
                }
            }
        }
    }

    /// The open block ends at `pos` in the buffer being parsed.
    fn end_block(&mut self, pos: usize) {
        if let Some(span) = self.spans.last_mut() {
            span.end = Some(self.base + pos as u64);
        }
    }

    /// Checks that the dump fed so far reads to its end the way `pg_restore` reading it from
    /// a stream does (`pg_restore --file=/dev/null`, for data blocks pg_dump did not
    /// compress itself): the whole TOC; every data block framed as `_readBlockHeader` and
    /// `_PrintData` read it (a known type byte, the dump id, length-prefixed chunks up to a
    /// zero length; large objects by oid up to a zero oid); the archive ending after a
    /// whole block; and the block of every TOC entry with data found in TOC order (a reader
    /// of a stream cannot go back for one it passed; blocks of other ids it skips, and so
    /// does this check). The error says what is wrong.
    pub fn check_blocks(&self) -> Result<BlockCheck, String> {
        if let Some(why) = &self.failed {
            return Err(why.clone());
        }
        let Some(header) = &self.header else {
            return Err("the dump ends inside its header".into());
        };
        if self.toc_end.is_none() {
            let read = header.toc_entries - self.toc_left.unwrap_or(0);
            return Err(format!(
                "the dump ends inside its table of contents ({read} of {} entries)",
                header.toc_entries
            ));
        }
        if !self.pending.is_empty() || !matches!(self.walk, Some(Walk::BlockStart)) {
            let inside = match self.spans.last() {
                Some(b) => format!("the data block of TOC entry {}", b.dump_id),
                None => "the first data block".to_string(),
            };
            return Err(format!(
                "unexpected end of the dump inside {inside}, at byte {}",
                self.base + self.pending.len() as u64
            ));
        }
        let mut blocks = self.spans.iter().map(|b| b.dump_id);
        for &id in &self.with_data {
            if !blocks.any(|b| b == id) {
                return Err(if self.spans.iter().any(|b| b.dump_id == id) {
                    format!(
                        "the data block of TOC entry {id} comes before blocks of entries listed \
                         ahead of it: a reader of the stream cannot go back for it"
                    )
                } else {
                    format!("no data block for TOC entry {id}, which has data")
                });
            }
        }
        Ok(BlockCheck {
            blocks: self.spans.len() as u64,
            entries_with_data: self.with_data.len() as u64,
            bytes: self.base,
        })
    }

    /// The patches to write: per entry whose offset was not set and whose block was seen,
    /// the position of its state byte and the bytes to put there (state, then the offset).
    /// An error, saying why, when the dump could not be indexed or did not end after a
    /// whole block: the file then stays as pg_dump wrote it, which restores as well, only
    /// slower in parallel.
    pub fn patches(&self) -> Result<Vec<(u64, Vec<u8>)>, String> {
        if let Some(why) = &self.failed {
            return Err(why.clone());
        }
        let (Some(header), Some(Walk::BlockStart)) = (&self.header, self.walk) else {
            return Err("the dump did not end after a whole data block".into());
        };
        if !self.pending.is_empty() {
            return Err("the dump ends inside a block header".into());
        }
        // Dump id → where its block starts (a later block of the same id wins).
        let starts: HashMap<i64, u64> = self.spans.iter().map(|b| (b.dump_id, b.start)).collect();
        Ok(self
            .unset
            .iter()
            .filter_map(|(id, at)| {
                let block = *starts.get(id)?;
                let mut bytes = vec![OFFSET_SET];
                bytes.extend((0..header.off_size).map(|i| (block >> (8 * i as u32)) as u8));
                Some((*at, bytes))
            })
            .collect())
    }
}

/// What [`SpoolIndex::check_blocks`] found in a dump that reads to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCheck {
    /// Data blocks walked.
    pub blocks: u64,
    /// TOC entries with data, each of whose block was found.
    pub entries_with_data: u64,
    /// Bytes of the dump.
    pub bytes: u64,
}

/// Writes `patches` ([`SpoolIndex::patches`]) into `file`.
#[cfg(unix)]
pub fn write_patches(file: &std::fs::File, patches: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    for (at, bytes) in patches {
        file.write_all_at(bytes, *at)?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn write_patches(_file: &std::fs::File, _patches: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::dump_header::tests::{put_int, put_str};

    /// A 1.14 archive whose TOC holds `entries` (dump id, whether it has data), followed
    /// by one data block per id of `blocks`, each of `rows` chunks.
    fn dump(entries: &[(i64, bool)], blocks: &[i64], rows: usize) -> Vec<u8> {
        let mut b = b"PGDMP".to_vec();
        b.extend_from_slice(&[1, 14, 0, 4, 8, 1]);
        put_int(&mut b, 0); // not compressed
        for v in [5, 4, 3, 24, 10, 126, 0] {
            put_int(&mut b, v);
        }
        for s in ["stoa", "15.20", "15.20"] {
            put_str(&mut b, Some(s));
        }
        put_int(&mut b, entries.len() as i64);
        for &(id, data) in entries {
            put_int(&mut b, id);
            put_int(&mut b, i64::from(data));
            for s in [
                "1259",
                "16384",
                "t",
                if data { "TABLE DATA" } else { "TABLE" },
            ] {
                put_str(&mut b, Some(s));
            }
            put_int(&mut b, 2);
            for s in [Some(""), None, None, Some("stoa"), Some(""), Some("heap")] {
                put_str(&mut b, s);
            }
            put_str(&mut b, Some("postgres"));
            put_str(&mut b, Some("false"));
            put_str(&mut b, None); // no dependencies
            b.push(if data { OFFSET_NOT_SET } else { 3 });
            b.extend_from_slice(&[0; 8]);
        }
        for &id in blocks {
            b.push(BLK_DATA);
            put_int(&mut b, id);
            for r in 0..rows {
                let row = format!("{r}\trow {r}\n");
                put_int(&mut b, row.len() as i64);
                b.extend_from_slice(row.as_bytes());
            }
            put_int(&mut b, 0);
        }
        b
    }

    fn check(bytes: &[u8], piece: usize) -> Result<BlockCheck, String> {
        let mut index = SpoolIndex::default();
        for p in bytes.chunks(piece) {
            index.feed(p);
        }
        index.check_blocks()
    }

    const TOC: [(i64, bool); 4] = [(1, false), (2, true), (3, false), (4, true)];

    #[test]
    fn a_whole_dump_walks_whatever_the_pieces_it_comes_in() {
        let d = dump(&TOC, &[2, 4], 50);
        for piece in [1, 2, 7, 4096, d.len()] {
            let c = check(&d, piece).unwrap();
            assert_eq!((c.blocks, c.entries_with_data), (2, 2));
            assert_eq!(c.bytes, d.len() as u64);
        }
    }

    #[test]
    fn every_shorter_prefix_fails() {
        let d = dump(&TOC, &[2, 4], 5);
        for cut in 0..d.len() {
            assert!(check(&d[..cut], 3).is_err(), "cut at {cut} of {}", d.len());
        }
    }

    #[test]
    fn a_missing_or_out_of_order_block_fails_and_a_stray_block_is_skipped() {
        let missing = check(&dump(&TOC, &[2], 3), 64).unwrap_err();
        assert!(
            missing.contains("no data block for TOC entry 4"),
            "{missing}"
        );
        let swapped = check(&dump(&TOC, &[4, 2], 3), 64).unwrap_err();
        assert!(swapped.contains("TOC entry 4 comes before"), "{swapped}");
        assert!(swapped.contains("cannot go back"), "{swapped}");
        // pg_restore skips a block no entry asks for; so does the walk.
        let stray = check(&dump(&TOC, &[2, 3, 4], 3), 64).unwrap();
        assert_eq!((stray.blocks, stray.entries_with_data), (3, 2));
    }

    #[test]
    fn garbage_after_the_last_block_fails() {
        let mut d = dump(&TOC, &[2, 4], 3);
        d.push(7);
        let e = check(&d, 64).unwrap_err();
        assert!(e.contains("unknown block type 7"), "{e}");
    }
}

//! Parallel restores ([`PostgresRestorer::jobs`](super::PostgresRestorer::jobs) above 1).
//!
//! `pg_restore --jobs` needs a seekable file, so the decoded dump is spooled to one, written
//! on the blocking pool (tokio's file writes spooled 2 GiB in about 9 s here, plain writes
//! in about 2-3 s). [`SpoolIndex`] walks the TOC and data blocks as they are written; once
//! the whole dump is in (and so its digest checked), each block's offset is written into
//! the spool file's TOC, as pg_dump does in a file it writes itself, and one
//! `pg_restore --jobs=N` restores the file with pg_restore's own scheduler (largest tables
//! first, the indexes of loaded tables beside the loads of others).
//!
//! Two ways of starting before the spool is complete were tried and measured slower on 2
//! cores with a 2 GiB dump (this design: 23.4 s): loading each table in a pg_restore of its
//! own as its block arrived, fed through this process (25.6 s: the feed costs CPU the
//! server's COPYs need, and pg_restore's scheduler has less to order), and creating the
//! schema from the TOC while the rest arrived, then `--section=data --section=post-data`
//! (26.7-27.1 s: a separate schema step makes pg_restore's parallel data and index phase
//! slower than one whole run). A damaged input fails while it is spooled, before
//! pg_restore starts; a pg_restore failure kills it. The caller drops the half-restored
//! database.

use std::io::Write;
use std::path::Path;

use futures::StreamExt;
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::restore::RestoreReport;
use stoa_backup_core::stream::ByteStream;

use super::conn::PgConnection;
use super::pg_restore::pg_restore;
use super::spool_index::{self, SpoolIndex};

/// What a parallel restore did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ParallelStats {
    /// Whether each data block's offset was recorded in the spool file (false for a dump
    /// the index could not read: pg_restore's workers then read through it to their blocks).
    pub offsets_recorded: bool,
    /// Milliseconds from the start until the whole dump was in the spool file.
    pub spooled_ms: u64,
    /// Until the end.
    pub total_ms: u64,
}

impl ParallelStats {
    /// Adds how a parallel restore went to `report`, under the `parallel` fact.
    pub(crate) fn add_to(stats: Option<ParallelStats>, report: &mut RestoreReport) {
        if let Some(s) = stats {
            report.facts.insert(
                "parallel".into(),
                serde_json::json!({
                    "offsets_recorded": s.offsets_recorded,
                    "spooled_ms": s.spooled_ms,
                    "total_ms": s.total_ms,
                }),
            );
        }
    }
}

/// Writes `plain` to `file` chunk by chunk on the blocking pool, feeding the index. Fails
/// with the input's own error (a digest mismatch, say) or a write error.
async fn spool(mut plain: ByteStream, mut file: std::fs::File) -> Result<SpoolIndex> {
    let mut index = SpoolIndex::default();
    while let Some(chunk) = plain.next().await {
        let chunk = chunk?;
        let (f, i, written) = tokio::task::spawn_blocking(move || {
            let r = file.write_all(&chunk);
            index.feed(&chunk);
            (file, index, r)
        })
        .await
        .map_err(|e| Error::internal(format!("the spool writer failed: {e}")))?;
        written.map_err(|e| Error::from_io(e, "writing the spool file failed"))?;
        (file, index) = (f, i);
    }
    // No fsync: pg_restore reads the file at once, and a crash loses the restore anyway.
    Ok(index)
}

/// Restores the decoded dump `plain` into `database` with `pg_restore --jobs=jobs` (see the
/// module documentation). `args` are pg_restore's other options. The whole dump is spooled,
/// and so checked against its digest, before pg_restore starts: a damaged input fails with
/// its own error and pg_restore never sees it.
pub(crate) async fn restore_parallel(
    program: &str,
    conn: &PgConnection,
    database: &str,
    args: &[String],
    jobs: u32,
    plain: ByteStream,
    spool_dir: Option<&Path>,
) -> Result<ParallelStats> {
    let started = std::time::Instant::now();
    let mut b = tempfile::Builder::new();
    b.prefix("stoa-restore-").suffix(".dump");
    let file = match spool_dir {
        Some(d) => b.tempfile_in(d),
        None => b.tempfile(),
    }
    .map_err(|e| Error::from_io(e, "cannot create a spool file for the parallel restore"))?;
    let writer = file
        .reopen()
        .map_err(|e| Error::from_io(e, "cannot open the spool file"))?;
    let index = spool(plain, writer).await?;
    let spooled_ms = ms(started);
    let offsets_recorded = write_offsets(&file, &index)?;
    let mut all = args.to_vec();
    all.push(format!("--jobs={jobs}"));
    all.push(file.path().display().to_string());
    pg_restore(program, conn, database, &all, None).await?;
    Ok(ParallelStats {
        offsets_recorded,
        spooled_ms,
        total_ms: ms(started),
    })
}

fn ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Records each data block's offset in the spool file, as pg_dump does in a file it writes
/// itself, so the parallel workers of the final step seek to their blocks.
fn write_offsets(file: &tempfile::NamedTempFile, index: &SpoolIndex) -> Result<bool> {
    match index.patches() {
        Ok(patches) => {
            spool_index::write_patches(file.as_file(), &patches).map_err(|e| {
                Error::from_io(e, "writing the data offsets into the spool file failed")
            })?;
            tracing::debug!(
                entries = patches.len(),
                "data offsets recorded in the spool file"
            );
            Ok(true)
        }
        Err(why) => {
            tracing::warn!(
                why,
                "the spool file keeps the dump's unset data offsets: the parallel restore reads through it to find each block"
            );
            Ok(false)
        }
    }
}

//! Parallel restores ([`PostgresRestorer::jobs`](super::PostgresRestorer::jobs) above 1)
//! that load tables while the dump is still arriving.
//!
//! `pg_restore --jobs` needs a seekable file, so the decoded dump is spooled to one; but the
//! restore need not wait for the whole file. As the spool grows, [`SpoolIndex`] finds the
//! TOC and each data block, and:
//! 1. once the TOC is in, `pg_restore --section=pre-data` creates the schema, fed the header
//!    and TOC on stdin;
//! 2. each table's data block then goes to a `pg_restore -L <its entry>` of its own, up to
//!    `jobs` at once, fed on stdin from the spool file as it is written (the header and
//!    TOC, then the block): the first tables load while the rest of the dump is still being
//!    read and decoded;
//! 3. once the whole dump is in (and so its digest checked), the data offsets are written
//!    into the spool file and one `pg_restore --jobs=N --section=data --section=post-data`
//!    restores the rest — sequence values, large objects, indexes, constraints — with
//!    pg_restore's own parallel scheduling and dependency order.
//!
//! A dump the index cannot read is restored as before: spooled whole, then one
//! `pg_restore --jobs=N` of the file. Any failure stops the other pg_restore processes
//! (they are killed with their futures); a damaged input is reported as such, not as the
//! error pg_restore made of it. The caller drops the half-restored database.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::stream::ByteStream;
use tokio::sync::watch;

use super::conn::PgConnection;
use super::pg_restore::pg_restore;
use super::spool_index::{self, BlockSpan, SpoolIndex};

/// How much of the spool file one read of a feeder takes.
const FEED_CHUNK: u64 = 1024 * 1024;

/// What the spooler has written so far.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Bytes in the spool file.
    written: u64,
    /// Where the TOC ends, once it is in.
    toc_end: Option<u64>,
    /// The TOC entries (dump id, kind), once the TOC is in.
    entries: Option<Arc<Vec<(i64, String)>>>,
    /// The data blocks seen so far.
    blocks: Vec<BlockSpan>,
    /// The index could not read the dump: no more blocks will be reported.
    index_failed: bool,
    /// The spooler stopped: the whole dump is in, or it failed (see [`Spooler::finish`]).
    stopped: bool,
}

/// What a parallel restore did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ParallelStats {
    /// Tables whose data was loaded by a pg_restore of its own as the dump arrived.
    pub tables_streamed: u64,
    /// Of those, the ones whose load began before the whole dump was in.
    pub started_before_the_end: u64,
    /// Whether the dump could not be indexed, so everything ran as one `pg_restore --jobs`
    /// of the spool file once it was complete.
    pub fallback: bool,
    /// Milliseconds from the start until the schema was created (pre-data done).
    pub schema_ms: u64,
    /// Until the whole dump was in the spool file.
    pub spooled_ms: u64,
    /// Until the last table loaded on its own was in.
    pub tables_ms: u64,
    /// Until the end (indexes, constraints and the rest restored).
    pub total_ms: u64,
}

/// The spool file and the task writing the decoded dump into it.
struct Spooler {
    file: tempfile::NamedTempFile,
    progress: watch::Receiver<Progress>,
    task: tokio::task::JoinHandle<Result<SpoolIndex>>,
}

impl Spooler {
    fn start(plain: ByteStream, dir: Option<&Path>) -> Result<Spooler> {
        let mut b = tempfile::Builder::new();
        b.prefix("stoa-restore-").suffix(".dump");
        let file = match dir {
            Some(d) => b.tempfile_in(d),
            None => b.tempfile(),
        }
        .map_err(|e| Error::from_io(e, "cannot create a spool file for the parallel restore"))?;
        let writer = file
            .reopen()
            .map_err(|e| Error::from_io(e, "cannot open the spool file"))?;
        let (tx, progress) = watch::channel(Progress::default());
        let task = tokio::spawn(spool(plain, writer, tx));
        Ok(Spooler {
            file,
            progress,
            task,
        })
    }

    fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }

    /// Waits for the spooler: the index of the whole dump, or the error that stopped it
    /// (the input's own error, such as a digest mismatch, or a write error).
    async fn finish(&mut self) -> Result<SpoolIndex> {
        (&mut self.task)
            .await
            .map_err(|e| Error::internal(format!("the spool task failed: {e}")))?
    }
}

/// Writes `plain` to `file` chunk by chunk (on the blocking pool), feeding the index and
/// publishing the progress after each chunk is in the file.
async fn spool(
    mut plain: ByteStream,
    file: std::fs::File,
    tx: watch::Sender<Progress>,
) -> Result<SpoolIndex> {
    let mut state = Some((file, SpoolIndex::default()));
    let result = async {
        while let Some(chunk) = plain.next().await {
            let chunk = chunk?;
            let (mut file, mut index) = state.take().expect("spool state");
            let (file, index, written) = tokio::task::spawn_blocking(move || {
                let r = file.write_all(&chunk);
                index.feed(&chunk);
                (file, index, r.map(|()| chunk.len() as u64))
            })
            .await
            .map_err(|e| Error::internal(format!("the spool writer failed: {e}")))?;
            let written =
                written.map_err(|e| Error::from_io(e, "writing the spool file failed"))?;
            tx.send_modify(|p| {
                p.written += written;
                if p.entries.is_none() {
                    if let (Some(end), Some(entries)) = (index.toc_end(), index.entries()) {
                        p.toc_end = Some(end);
                        p.entries = Some(Arc::new(entries.to_vec()));
                    }
                }
                if p.blocks.as_slice() != index.blocks() {
                    p.blocks = index.blocks().to_vec();
                }
                p.index_failed = index.failure().is_some();
            });
            state = Some((file, index));
        }
        let (file, index) = state.take().expect("spool state");
        // No fsync: pg_restore reads the file at once, and a crash loses the restore anyway.
        drop(file);
        Ok(index)
    }
    .await;
    tx.send_modify(|p| p.stopped = true);
    result
}

/// `[from, to)` of the spool file, read as it is written: waits for bytes not written yet,
/// and ends at `to` (or, when `to` is `None`, at the end of block `dump_id` once the index
/// finds it).
fn follow(
    path: PathBuf,
    from: u64,
    to: Option<u64>,
    dump_id: Option<i64>,
    progress: watch::Receiver<Progress>,
) -> ByteStream {
    let state = (None::<std::fs::File>, from);
    Box::pin(futures::stream::try_unfold(
        (state, path),
        move |((file, pos), path)| {
            let mut progress = progress.clone();
            async move {
                loop {
                    let (written, end, stopped) = {
                        let p = progress.borrow_and_update();
                        let end = to.or_else(|| {
                            let id = dump_id?;
                            p.blocks.iter().find(|b| b.dump_id == id)?.end
                        });
                        (p.written, end, p.stopped)
                    };
                    if end == Some(pos) {
                        return Ok(None);
                    }
                    let limit = end.unwrap_or(u64::MAX).min(written);
                    if pos < limit {
                        let len = (limit - pos).min(FEED_CHUNK);
                        let (file, chunk) = read_at(file, path.clone(), pos, len).await?;
                        let next = pos + chunk.len() as u64;
                        return Ok(Some((chunk, ((Some(file), next), path))));
                    }
                    if stopped {
                        // The spooler's own error is reported by the driver.
                        return Err(Error::source_failed(
                            "the dump ended before the block a pg_restore worker was reading",
                        ));
                    }
                    if progress.changed().await.is_err() {
                        return Err(Error::internal("the spool task went away"));
                    }
                }
            }
        },
    ))
}

/// Reads `len` bytes at `pos` (on the blocking pool), opening the file on first use.
async fn read_at(
    file: Option<std::fs::File>,
    path: PathBuf,
    pos: u64,
    len: u64,
) -> Result<(std::fs::File, Bytes)> {
    tokio::task::spawn_blocking(move || {
        let mut file = match file {
            Some(f) => f,
            None => std::fs::File::open(&path)?,
        };
        file.seek(SeekFrom::Start(pos))?;
        // Read into spare capacity: no zeroing of a buffer about to be overwritten.
        let mut buf = Vec::with_capacity(len as usize);
        (&mut file).take(len).read_to_end(&mut buf)?;
        if (buf.len() as u64) < len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the spool file is shorter than what was written to it",
            ));
        }
        Ok::<_, std::io::Error>((file, Bytes::from(buf)))
    })
    .await
    .map_err(|e| Error::internal(format!("the spool reader failed: {e}")))?
    .map_err(|e| Error::from_io(e, "reading the spool file failed"))
}

/// Restores the decoded dump `plain` into `database` with `jobs` pg_restore processes at
/// once (see the module documentation). `args` are the options every pg_restore gets.
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
    let mut spooler = Spooler::start(plain, spool_dir)?;
    let outcome = drive(program, conn, database, args, jobs, &mut spooler, started).await;
    match outcome {
        Ok(mut stats) => {
            stats.total_ms = ms(started);
            Ok(stats)
        }
        Err(e) => {
            // A damaged input makes pg_restore fail on garbage before the digest check at
            // the end sees it: the input's own error is the one to report.
            let spooled = spooler.finish().await;
            Err(spooled.err().unwrap_or(e))
        }
    }
}

async fn drive(
    program: &str,
    conn: &PgConnection,
    database: &str,
    args: &[String],
    jobs: u32,
    spooler: &mut Spooler,
    started: std::time::Instant,
) -> Result<ParallelStats> {
    let path = spooler.path();
    let mut progress = spooler.progress.clone();
    let ready = progress
        .wait_for(|p| p.entries.is_some() || p.index_failed || p.stopped)
        .await
        .map_err(|_| Error::internal("the spool task went away"))?
        .clone();
    let (Some(toc_end), Some(entries)) = (ready.toc_end, ready.entries) else {
        return spool_whole_then_restore(program, conn, database, args, jobs, spooler).await;
    };

    let mut pre = args.to_vec();
    pre.push("--section=pre-data".into());
    let toc = follow(path.clone(), 0, Some(toc_end), None, progress.clone());
    pg_restore(program, conn, database, &pre, Some(toc)).await?;
    let schema_ms = ms(started);

    let is_table_data = |id: i64| {
        entries
            .iter()
            .any(|(entry, desc)| *entry == id && desc == "TABLE DATA")
    };
    let mut stats = ParallelStats {
        schema_ms,
        ..ParallelStats::default()
    };
    let mut streamed: Vec<i64> = Vec::new();
    let mut running = FuturesUnordered::new();
    let mut next_block = 0usize;
    let mut spool_gone = false;
    loop {
        let (blocks, stopped, index_failed) = {
            let p = progress.borrow_and_update();
            (p.blocks.clone(), p.stopped, p.index_failed)
        };
        if stopped && stats.spooled_ms == 0 {
            stats.spooled_ms = ms(started);
        }
        while running.len() < jobs as usize && next_block < blocks.len() {
            let span = blocks[next_block];
            next_block += 1;
            if !is_table_data(span.dump_id) {
                continue; // large objects: the final step restores them
            }
            let list = entry_list(spooler, &[span.dump_id])?;
            let mut worker = args.to_vec();
            worker.push(format!("--use-list={}", list.path().display()));
            let input =
                follow(path.clone(), 0, Some(toc_end), None, progress.clone()).chain(follow(
                    path.clone(),
                    span.start,
                    None,
                    Some(span.dump_id),
                    progress.clone(),
                ));
            stats.tables_streamed += 1;
            if !stopped {
                stats.started_before_the_end += 1;
            }
            streamed.push(span.dump_id);
            running.push(async move {
                let r = pg_restore(program, conn, database, &worker, Some(Box::pin(input))).await;
                drop(list);
                r
            });
        }
        let all_launched = next_block == blocks.len() && (stopped || index_failed);
        if all_launched && running.is_empty() {
            break;
        }
        // The spooler drops its end of the channel once it stopped: the last state is in.
        let more = !all_launched && !spool_gone;
        if running.is_empty() && !more {
            return Err(Error::internal("the spool task ended without saying so"));
        }
        tokio::select! {
            Some(done) = running.next(), if !running.is_empty() => done?,
            changed = progress.changed(), if more => spool_gone = changed.is_err(),
        }
    }

    stats.tables_ms = ms(started);
    let index = spooler.finish().await?;
    let mut rest = args.to_vec();
    rest.extend([
        format!("--jobs={jobs}"),
        "--section=data".into(),
        "--section=post-data".into(),
    ]);
    let remaining: Vec<i64> = entries
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !streamed.contains(id))
        .collect();
    write_offsets(&spooler.file, &index)?;
    stats.fallback = index.failure().is_some();
    if !remaining.is_empty() {
        let list = entry_list(spooler, &remaining)?;
        rest.push(format!("--use-list={}", list.path().display()));
        rest.push(path.display().to_string());
        pg_restore(program, conn, database, &rest, None).await?;
    }
    Ok(stats)
}

/// The fallback for a dump whose TOC the index could not read: the whole dump spooled, then
/// one `pg_restore --jobs` of the file.
async fn spool_whole_then_restore(
    program: &str,
    conn: &PgConnection,
    database: &str,
    args: &[String],
    jobs: u32,
    spooler: &mut Spooler,
) -> Result<ParallelStats> {
    let index = spooler.finish().await?;
    write_offsets(&spooler.file, &index)?;
    let mut all = args.to_vec();
    all.push(format!("--jobs={jobs}"));
    all.push(spooler.path().display().to_string());
    pg_restore(program, conn, database, &all, None).await?;
    Ok(ParallelStats {
        fallback: true,
        ..ParallelStats::default()
    })
}

fn ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Records each data block's offset in the spool file, as pg_dump does in a file it writes
/// itself, so the parallel workers of the final step seek to their blocks.
fn write_offsets(file: &tempfile::NamedTempFile, index: &SpoolIndex) -> Result<()> {
    match index.patches() {
        Ok(patches) => {
            spool_index::write_patches(file.as_file(), &patches).map_err(|e| {
                Error::from_io(e, "writing the data offsets into the spool file failed")
            })?;
            tracing::debug!(entries = patches.len(), "data offsets recorded in the spool file");
        }
        Err(why) => tracing::warn!(
            why,
            "the spool file keeps the dump's unset data offsets: the parallel restore reads through it to find each block"
        ),
    }
    Ok(())
}

/// A `pg_restore --use-list` file naming these TOC entries, beside the spool file.
fn entry_list(spooler: &Spooler, ids: &[i64]) -> Result<tempfile::NamedTempFile> {
    let dir = spooler
        .file
        .path()
        .parent()
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let mut list = tempfile::Builder::new()
        .prefix("stoa-restore-")
        .suffix(".list")
        .tempfile_in(dir)
        .map_err(|e| Error::from_io(e, "cannot create a pg_restore list file"))?;
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    list.write_all(text.as_bytes())
        .and_then(|()| list.flush())
        .map_err(|e| Error::from_io(e, "writing a pg_restore list file failed"))?;
    Ok(list)
}

//! Verifiers for PostgreSQL dumps: an archive check (TOC and every data block) and a
//! scratch restore with row-count comparison and caller SQL checks.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::manifest::{ArtifactRecord, VerificationRecord, VerifyMethod};
use stoa_backup_core::process::{spawn_stdout_stream, CommandSpec};
use stoa_backup_core::stream::{tee, ByteStream};
use stoa_backup_core::verify::{InlineContext, Verifier, VerifyContext};

use super::conn::{quote_ident, PgConnection};
use super::dump_header::{parse_header, DumpCompression, DumpHeader, ParseError};
use super::facts::PostgresFacts;
use super::pg_restore::pg_restore;
use super::queries;
use super::restore::compare_counts;
use super::spool_index::{BlockCheck, SpoolIndex};
use super::swap::{create_database, drop_database};
use super::{COMPONENT, DUMP_CONTENT_TYPE};

fn record(name: &str, ok: bool, detail: String, warnings: Vec<String>) -> VerificationRecord {
    VerificationRecord::now(name, ok, detail).with_warnings(warnings)
}

/// The first error a stream carried, kept aside: the archive check reads through
/// `pg_restore`, whose own failure on a cut input would otherwise hide why the input was cut
/// (a damaged stored artifact, an abandoned store).
#[derive(Clone, Default)]
struct InputWatch {
    bytes: Arc<AtomicU64>,
    error: Arc<Mutex<Option<(ErrorKind, String)>>>,
}

impl InputWatch {
    fn watch(&self, input: ByteStream) -> ByteStream {
        let w = self.clone();
        Box::pin(input.inspect(move |item| match item {
            Ok(chunk) => {
                w.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                let mut slot = w.error.lock().expect("input watch lock");
                slot.get_or_insert_with(|| (e.kind(), e.message().to_string()));
            }
        }))
    }

    fn error(&self) -> Option<(ErrorKind, String)> {
        self.error.lock().expect("input watch lock").clone()
    }
}

/// What the archive check made of a dump: `pg_restore`'s listing, the full read of the data
/// blocks, and the input itself.
struct ArchiveReading {
    listing: Result<Listing>,
    full_read: Result<FullRead>,
    bytes: u64,
    input_error: Option<(ErrorKind, String)>,
}

/// How the data blocks were read to the end, and what that found.
enum FullRead {
    /// By `pg_restore --file=/dev/null`.
    PgRestore,
    /// By the in-process walk of the blocks ([`SpoolIndex::check_blocks`]).
    Walked(BlockCheck),
}

/// What `pg_restore --list --verbose` said.
#[derive(Debug, Default)]
struct Listing {
    header_entries: Option<u64>,
    listed: u64,
}

async fn read_listing(mut stdout: ByteStream) -> Result<Listing> {
    let mut l = Listing::default();
    let mut partial: Vec<u8> = Vec::new();
    let line = |raw: &[u8], l: &mut Listing| {
        let s = String::from_utf8_lossy(raw);
        let t = s.trim();
        if let Some(rest) = t.strip_prefix(';') {
            if let Some(n) = rest.trim().strip_prefix("TOC Entries:") {
                l.header_entries = n.trim().parse().ok();
            }
        } else if !t.is_empty() {
            l.listed += 1;
        }
    };
    while let Some(chunk) = stdout.next().await {
        let chunk = chunk?;
        let mut rest: &[u8] = &chunk;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if partial.is_empty() {
                line(&rest[..i], &mut l);
            } else {
                partial.extend_from_slice(&rest[..i]);
                let full = std::mem::take(&mut partial);
                line(&full, &mut l);
            }
            rest = &rest[i + 1..];
        }
        partial.extend_from_slice(rest);
    }
    if !partial.is_empty() {
        line(&partial, &mut l);
    }
    Ok(l)
}

/// Reads what `pg_restore --file=/dev/null` prints (nothing) to its end: its exit status.
async fn drain(mut s: ByteStream) -> Result<FullRead> {
    while let Some(c) = s.next().await {
        c?;
    }
    Ok(FullRead::PgRestore)
}

/// Walks every data block of `plain` in process, to its end (see [`SpoolIndex::check_blocks`]).
async fn walk_blocks(mut plain: ByteStream) -> Result<FullRead> {
    let mut index = SpoolIndex::default();
    while let Some(chunk) = plain.next().await {
        index.feed(&chunk?);
        if index.failure().is_some() {
            break;
        }
    }
    index
        .check_blocks()
        .map(FullRead::Walked)
        .map_err(|why| Error::integrity(why).with_operation("verify"))
}

impl PgArchiveVerifier {
    /// Reads every data block of `plain` to the end: walked in process when the header says
    /// pg_dump did not compress them, by `pg_restore --file=/dev/null` otherwise (and when
    /// asked, and when the header does not parse: pg_restore's error then says why).
    async fn full_read(&self, plain: ByteStream) -> Result<FullRead> {
        let plain = if self.pg_restore_full_read {
            plain
        } else {
            let (plain, header) = peek_header(plain).await;
            if matches!(&header, Some(h) if h.compression == DumpCompression::None) {
                return walk_blocks(plain).await;
            }
            plain
        };
        let full_spec = CommandSpec::new(&self.pg_restore).arg("--file=/dev/null");
        let full = spawn_stdout_stream(&full_spec, COMPONENT, Some(plain))?;
        drain(full.stream).await
    }
}

/// Reads the start of `plain` up to the end of the dump's header (or whatever ends the
/// attempt: a parse error, a stream error, the end) and gives the stream back whole, with
/// the header when it parsed.
async fn peek_header(mut plain: ByteStream) -> (ByteStream, Option<DumpHeader>) {
    let mut seen: Vec<Result<bytes::Bytes>> = Vec::new();
    let mut start: Vec<u8> = Vec::new();
    let header = loop {
        let Some(item) = plain.next().await else {
            break None;
        };
        let chunk = match item {
            Ok(c) => c,
            Err(e) => {
                seen.push(Err(e));
                break None;
            }
        };
        start.extend_from_slice(&chunk[..chunk.len().min(HEADER_PEEK_LIMIT)]);
        seen.push(Ok(chunk));
        match parse_header(&start) {
            Ok((h, _)) => break Some(h),
            Err(ParseError::NeedMore) if start.len() < HEADER_PEEK_LIMIT => continue,
            Err(_) => break None,
        }
    };
    let replay = futures::stream::iter(seen);
    (Box::pin(replay.chain(plain)), header)
}

/// More than any custom-format header takes (it holds a few short strings).
const HEADER_PEEK_LIMIT: usize = 64 * 1024;

/// Checks a stored dump as a whole: streams the plain bytes (through the recorded codec
/// chain, so the stored SHA-256 is checked too) into `pg_restore --list` — its entry count
/// must match the TOC count recorded at backup — and, at the same time, through a full read
/// of every data block. `--list` alone reads only the table of contents: a dump cut off in
/// its data passes it.
///
/// The full read is what `pg_restore --file=/dev/null` does with a dump from a stream. For
/// a dump whose data blocks pg_dump did not compress (`-Z0`, the default of
/// [`PostgresSource`](super::PostgresSource), which leaves compression to the pipeline),
/// that is a walk through the blocks' framing, made here in process
/// ([`SpoolIndex::check_blocks`]): it costs no second `pg_restore` reading every byte
/// through a pipe, CPU the database server and the compressor need during a backup. Data
/// blocks pg_dump compressed (gzip, lz4, zstd) are read by `pg_restore`, which decompresses
/// them; [`full_read_by_pg_restore`](Self::full_read_by_pg_restore) asks for that always.
#[derive(Debug, Clone)]
pub struct PgArchiveVerifier {
    pg_restore: String,
    pg_restore_full_read: bool,
}

impl Default for PgArchiveVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl PgArchiveVerifier {
    /// The verifier, running `pg_restore` from `PATH`.
    pub fn new() -> Self {
        PgArchiveVerifier {
            pg_restore: "pg_restore".to_string(),
            pg_restore_full_read: false,
        }
    }

    /// Reads every data block through `pg_restore --file=/dev/null` also when they are not
    /// compressed (by default those are walked in process, which checks the same).
    pub fn full_read_by_pg_restore(mut self, on: bool) -> Self {
        self.pg_restore_full_read = on;
        self
    }

    /// Uses this pg_restore.
    pub fn pg_restore_path(mut self, path: impl Into<String>) -> Self {
        self.pg_restore = path.into();
        self
    }
}

const ARCHIVE: &str = "postgres-archive";
const SCRATCH: &str = "postgres-scratch-restore";

#[async_trait]
impl Verifier for PgArchiveVerifier {
    fn name(&self) -> &str {
        ARCHIVE
    }

    fn applies_to(&self, artifact: &ArtifactRecord) -> bool {
        artifact.content_type == DUMP_CONTENT_TYPE
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
        let facts: PostgresFacts = ctx.artifact.facts_as()?;
        let plain = match ctx.open_plain().await {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::Integrity => {
                return Ok(record(
                    ARCHIVE,
                    false,
                    format!("cannot decode the stored artifact: {e}"),
                    vec![],
                ))
            }
            Err(e) => return Err(e),
        };
        let reading = self.read_archive(plain).await?;
        Ok(verdict(reading, &facts, "stored bytes are damaged")?
            .with_method(VerifyMethod::ReadBack))
    }

    fn inline(&self) -> bool {
        true
    }

    /// The same check on the dump as pg_dump writes it, while it is stored; the recorded
    /// TOC count comes from the stored record.
    async fn verify_inline(&self, ctx: InlineContext) -> Result<VerificationRecord> {
        let InlineContext { plain, stored, .. } = ctx;
        let reading = self.read_archive(plain).await?;
        let stored = stored.get().await?;
        let facts: PostgresFacts = stored.facts_as()?;
        Ok(
            verdict(reading, &facts, "the dump stream broke off")?
                .with_method(VerifyMethod::Inline),
        )
    }
}

impl PgArchiveVerifier {
    /// Streams `plain` into `pg_restore --list` and, at the same time, through a full read
    /// of every data block. `--list` stops after the table of contents; the full read goes on.
    async fn read_archive(&self, plain: ByteStream) -> Result<ArchiveReading> {
        let watch = InputWatch::default();
        let (full_in, mut copies) = tee(watch.watch(plain), 1, 4);
        let list_in = copies.pop().expect("one copy");
        let list_spec = CommandSpec::new(&self.pg_restore).args(["--list", "--verbose"]);
        let list = spawn_stdout_stream(&list_spec, COMPONENT, Some(list_in))?;
        let full_read = self.full_read(full_in);
        let (listing, full_read) = futures::join!(read_listing(list.stream), full_read);
        Ok(ArchiveReading {
            listing,
            full_read,
            bytes: watch.bytes.load(Ordering::Relaxed),
            input_error: watch.error(),
        })
    }
}

/// The archive check's verdict on what `pg_restore` read, against the recorded facts. An
/// input that failed for another reason than damage (a storage read error, an abandoned
/// store) means the check could not run: an `Err`.
fn verdict(
    reading: ArchiveReading,
    facts: &PostgresFacts,
    damaged: &str,
) -> Result<VerificationRecord> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    match reading.input_error {
        Some((ErrorKind::Integrity, message)) => problems.push(format!("{damaged}: {message}")),
        Some((kind, message)) => return Err(Error::new(kind, message).with_operation("verify")),
        None => {}
    }
    let ArchiveReading {
        listing,
        full_read,
        bytes,
        ..
    } = reading;
    match &listing {
        Ok(l) => {
            match (l.header_entries, facts.toc.toc_entries) {
                (Some(h), Some(rec)) if h != rec => problems.push(format!(
                    "pg_restore --list reports {h} TOC entries, {rec} were recorded at backup"
                )),
                (None, _) => {
                    problems.push("pg_restore --list printed no TOC entry count".to_string())
                }
                (Some(_), None) => {
                    warnings.push("no TOC entry count was recorded at backup time".to_string())
                }
                _ => {}
            }
            if let Some(h) = l.header_entries {
                if l.listed != h {
                    problems.push(format!(
                        "pg_restore --list listed {} entries of {h}",
                        l.listed
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("pg_restore --list failed: {}", e.message())),
    }
    if let Err(e) = &full_read {
        problems.push(format!(
            "full read of the data blocks failed: {}",
            e.message()
        ));
    }
    if !problems.is_empty() {
        return Ok(record(ARCHIVE, false, problems.join("; "), warnings));
    }
    let entries = listing
        .as_ref()
        .ok()
        .and_then(|l| l.header_entries)
        .unwrap_or(0);
    let how = match full_read {
        Ok(FullRead::Walked(w)) => format!(
            "all {} data blocks of {bytes} bytes read in process (the blocks of {} TOC entries \
             with data, in order)",
            w.blocks, w.entries_with_data
        ),
        _ => format!("all data blocks of {bytes} bytes read by pg_restore"),
    };
    Ok(record(
        ARCHIVE,
        true,
        format!("{entries} TOC entries as recorded by pg_restore --list; {how}"),
        warnings,
    ))
}

/// What an [`SqlCheck`] expects from its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlExpect {
    /// The query runs without error.
    Succeeds,
    /// The first column of the first row is boolean `true`.
    True,
    /// The first column of the first row is an integer at least this large.
    AtLeast(i64),
    /// The first column of the first row is an integer equal to this.
    Equals(i64),
}

/// A caller check run against the scratch-restored database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlCheck {
    /// Name shown in the verification detail.
    pub name: String,
    /// The query.
    pub sql: String,
    /// What must come back.
    pub expect: SqlExpect,
}

impl SqlCheck {
    /// A check that the query runs.
    pub fn succeeds(name: impl Into<String>, sql: impl Into<String>) -> Self {
        SqlCheck {
            name: name.into(),
            sql: sql.into(),
            expect: SqlExpect::Succeeds,
        }
    }

    /// A check that the query returns `true`.
    pub fn is_true(name: impl Into<String>, sql: impl Into<String>) -> Self {
        SqlCheck {
            name: name.into(),
            sql: sql.into(),
            expect: SqlExpect::True,
        }
    }

    /// A check that the query returns an integer ≥ `min` (e.g.
    /// `select count(*) from stoa.subscriptions`).
    pub fn at_least(name: impl Into<String>, sql: impl Into<String>, min: i64) -> Self {
        SqlCheck {
            name: name.into(),
            sql: sql.into(),
            expect: SqlExpect::AtLeast(min),
        }
    }

    async fn run(&self, client: &tokio_postgres::Client) -> std::result::Result<String, String> {
        let rows =
            client
                .query(self.sql.as_str(), &[])
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(db) => db.message().to_string(),
                    None => e.to_string(),
                })?;
        let first = || rows.first().ok_or_else(|| "no rows returned".to_string());
        let int = |row: &tokio_postgres::Row| -> std::result::Result<i64, String> {
            row.try_get::<_, i64>(0)
                .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
                .map_err(|_| "first column is not an integer".to_string())
        };
        match &self.expect {
            SqlExpect::Succeeds => Ok(format!("{} rows", rows.len())),
            SqlExpect::True => {
                let v: bool = first()?
                    .try_get(0)
                    .map_err(|_| "first column is not a boolean".to_string())?;
                if v {
                    Ok("true".into())
                } else {
                    Err("returned false".into())
                }
            }
            SqlExpect::AtLeast(min) => {
                let v = int(first()?)?;
                if v >= *min {
                    Ok(v.to_string())
                } else {
                    Err(format!("returned {v}, expected at least {min}"))
                }
            }
            SqlExpect::Equals(want) => {
                let v = int(first()?)?;
                if v == *want {
                    Ok(v.to_string())
                } else {
                    Err(format!("returned {v}, expected {want}"))
                }
            }
        }
    }
}

/// Restores the dump into a temporary database on a given server, compares exact
/// `count(*)` per table with the counts recorded at backup time (same snapshot as the
/// dump), runs the caller's SQL checks, and drops the temporary database — also when
/// anything fails.
#[derive(Debug, Clone)]
pub struct ScratchRestoreVerifier {
    server: PgConnection,
    checks: Vec<SqlCheck>,
    pg_restore: String,
    prefix: String,
}

impl ScratchRestoreVerifier {
    /// Restores on the server reached by `server` (its database is used to create and drop
    /// the scratch database; the user needs `CREATEDB`).
    pub fn new(server: PgConnection) -> Self {
        ScratchRestoreVerifier {
            server,
            checks: Vec::new(),
            pg_restore: "pg_restore".to_string(),
            prefix: "stoa_verify_".to_string(),
        }
    }

    /// Adds an SQL check.
    pub fn check(mut self, check: SqlCheck) -> Self {
        self.checks.push(check);
        self
    }

    /// Uses this pg_restore.
    pub fn pg_restore_path(mut self, path: impl Into<String>) -> Self {
        self.pg_restore = path.into();
        self
    }

    /// Prefix of scratch database names (default `stoa_verify_`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    async fn check_in(
        &self,
        ctx: &VerifyContext<'_>,
        facts: &PostgresFacts,
        scratch: &str,
    ) -> Result<VerificationRecord> {
        let plain = match ctx.open_plain().await {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::Integrity => {
                return Ok(record(
                    SCRATCH,
                    false,
                    format!("cannot decode the stored artifact: {e}"),
                    vec![],
                ))
            }
            Err(e) => return Err(e),
        };
        let args = vec![
            "--exit-on-error".to_string(),
            "--no-owner".to_string(),
            "--no-privileges".to_string(),
        ];
        match pg_restore(&self.pg_restore, &self.server, scratch, &args, Some(plain)).await {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::Restore | ErrorKind::Integrity) => {
                return Ok(record(
                    SCRATCH,
                    false,
                    format!("restore into a scratch database failed: {}", e.message()),
                    vec![],
                ))
            }
            Err(e) => return Err(e),
        }
        let client = self.server.connect(scratch).await?;
        let counts = queries::all_exact_counts(&client).await?;
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let compared = match &facts.row_counts {
            Some(recorded) => {
                problems.extend(compare_counts(recorded, &counts));
                recorded.len()
            }
            None => {
                warnings.push(
                    "no exact row counts were recorded at backup time; counts were not compared"
                        .to_string(),
                );
                0
            }
        };
        let mut results = Vec::new();
        for c in &self.checks {
            match c.run(&client).await {
                Ok(v) => results.push(format!("{}: {v}", c.name)),
                Err(why) => problems.push(format!("check '{}' failed: {why}", c.name)),
            }
        }
        drop(client);
        if !problems.is_empty() {
            return Ok(record(SCRATCH, false, problems.join("; "), warnings));
        }
        let rows: i64 = counts.values().sum();
        let mut detail = format!("restored into a scratch database; {compared} tables match the recorded counts ({rows} rows)");
        if !results.is_empty() {
            detail.push_str(&format!("; checks: {}", results.join(", ")));
        }
        Ok(record(SCRATCH, true, detail, warnings))
    }
}

/// Drops the scratch database if the verification future is dropped half-way.
struct DropGuard {
    server: Option<PgConnection>,
    name: String,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let (Some(server), Ok(handle)) =
            (self.server.take(), tokio::runtime::Handle::try_current())
        {
            let name = std::mem::take(&mut self.name);
            handle.spawn(async move {
                if let Ok(c) = server.connect(server.get_dbname()).await {
                    drop_database(&c, &name).await;
                }
            });
        }
    }
}

#[async_trait]
impl Verifier for ScratchRestoreVerifier {
    fn name(&self) -> &str {
        SCRATCH
    }

    fn applies_to(&self, artifact: &ArtifactRecord) -> bool {
        artifact.content_type == DUMP_CONTENT_TYPE
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
        let facts: PostgresFacts = ctx.artifact.facts_as()?;
        let scratch = format!("{}{:016x}", self.prefix, rand::random::<u64>());
        let admin = self
            .server
            .connect(self.server.get_dbname())
            .await
            .map_err(|e| e.or_operation("verify"))?;
        create_database(&admin, &scratch, facts.encoding.as_deref())
            .await
            .map_err(|e| {
                e.with_operation("verify").with_hint(
                    "the scratch-restore verifier needs a role with CREATEDB on the scratch server",
                )
            })?;
        let mut guard = DropGuard {
            server: Some(self.server.clone()),
            name: scratch.clone(),
        };
        let outcome = self.check_in(ctx, &facts, &scratch).await;
        drop_database(&admin, &scratch).await;
        guard.server = None;
        outcome
    }
}

/// Counts every user table of `database` (exact `count(*)`), keyed like the recorded
/// `row_counts` fact.
pub async fn exact_row_counts(
    conn: &PgConnection,
    database: &str,
) -> Result<BTreeMap<String, i64>> {
    let client = conn.connect(database).await?;
    queries::all_exact_counts(&client).await
}

/// `DROP DATABASE IF EXISTS … WITH (FORCE)`, for tests and tools.
pub async fn drop_database_force(conn: &PgConnection, database: &str) -> Result<()> {
    let client = conn.connect(conn.get_dbname()).await?;
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(database)
        ))
        .await
        .map_err(|e| queries::map_query_error(e, "dropping a database"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn listing_counts_entries_and_reads_the_header() {
        let text = ";\n;     TOC Entries: 3\n;\n1; 0 0 ENCODING - ENCODING\n2; 0 0 STDSTRINGS - STDSTRINGS\n;\tdepends on: 1\n3; 0 0 SEARCHPATH - SEARCHPATH\n";
        let chunks: Vec<Result<Bytes>> = text
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let l = read_listing(Box::pin(futures::stream::iter(chunks)))
            .await
            .unwrap();
        assert_eq!(l.header_entries, Some(3));
        assert_eq!(l.listed, 3);
    }
}

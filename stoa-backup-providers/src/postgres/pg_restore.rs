//! Running `pg_restore` on a stream of dump bytes (or a spooled file, see `parallel.rs`),
//! reporting a damaged input as such rather than as whatever pg_restore made of it.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::process::{run_with_stdin, CommandSpec};
use stoa_backup_core::stream::ByteStream;

use super::conn::PgConnection;
use super::COMPONENT;

/// A stream read through a shared handle, so that what its reader left unread can still
/// be read after the reader is gone.
struct SharedStream(Arc<Mutex<ByteStream>>);

impl futures::Stream for SharedStream {
    type Item = Result<bytes::Bytes>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.lock().expect("stream").as_mut().poll_next(cx)
    }
}

/// Passes a stream through, but on its first error ends it and keeps the error, so a child
/// reading it sees EOF and the caller can report the real cause.
pub(crate) fn capture_error(stream: ByteStream) -> (ByteStream, Arc<Mutex<Option<Error>>>) {
    let slot: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    let s = slot.clone();
    let out = stream
        .map(move |item| match item {
            Ok(b) => Some(Ok(b)),
            Err(e) => {
                s.lock().expect("slot").get_or_insert(e);
                None
            }
        })
        .take_while(|x| futures::future::ready(x.is_some()))
        .filter_map(futures::future::ready);
    (Box::pin(out), slot)
}

/// Runs pg_restore into `database` (stdin when `input` is given, otherwise the file path in
/// `args`). Failures are [`ErrorKind::Restore`] with pg_restore's stderr; a damaged input
/// stream fails with its own (integrity) error.
pub(crate) async fn pg_restore(
    program: &str,
    conn: &PgConnection,
    database: &str,
    args: &[String],
    input: Option<ByteStream>,
) -> Result<()> {
    let mut spec = CommandSpec::new(program)
        .args(args.iter().cloned())
        .arg(format!("--dbname={}", conn.conninfo(database)));
    spec = conn.apply_env(spec);
    let (input, slot, rest) = match input {
        Some(s) => {
            let rest = Arc::new(Mutex::new(s));
            let (s, slot) = capture_error(Box::pin(SharedStream(rest.clone())));
            (Some(s), Some(slot), Some(rest))
        }
        None => (None, None, None),
    };
    let result = run_with_stdin(&spec, COMPONENT, input).await;
    if let Some(e) = slot.and_then(|s| s.lock().expect("slot").take()) {
        return Err(e);
    }
    if let (Err(_), Some(rest)) = (&result, rest) {
        // pg_restore can trip over damage (and stop reading) before the digest check at the
        // end of the stream sees it: read the rest, so that a damaged artifact is reported
        // as such rather than as whatever pg_restore made of the garbage.
        let mut remaining = std::mem::replace(
            &mut *rest.lock().expect("stream"),
            stoa_backup_core::stream::empty(),
        );
        while let Some(item) = remaining.next().await {
            item?;
        }
    }
    result.map(|_| ()).map_err(|e| {
        if e.kind() == ErrorKind::Source {
            Error::new(
                ErrorKind::Restore,
                format!("pg_restore into '{database}' failed: {}", e.message()),
            )
            .with_hint("read pg_restore's error above; nothing was left under the live name")
        } else {
            e.or_operation("restore")
        }
    })
}

/// Room kept free beside a spool file: a disk filled to the last byte breaks other writers
/// (the database server's own WAL, if it shares the volume).
const SPOOL_HEADROOM: u64 = 256 * 1024 * 1024;

/// Refuses a parallel restore whose spool file (`needed` bytes, the dump's plain size)
/// would not fit in `dir` (the system temp dir when `None`) with [`SPOOL_HEADROOM`] to spare,
/// before anything is created or written.
pub(crate) fn check_spool_space(dir: Option<&std::path::Path>, needed: u64) -> Result<()> {
    let dir = dir.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let available = available_space(&dir).map_err(|e| {
        Error::from_io(e, format!("cannot tell the free space of the spool directory {}", dir.display()))
            .with_operation("restore")
            .with_hint("check that the spool directory exists and is readable, or set spool_dir(...) to one that is")
    })?;
    spool_fits(&dir, needed, available)
}

fn spool_fits(dir: &std::path::Path, needed: u64, available: u64) -> Result<()> {
    let mib = |b: u64| b / (1024 * 1024);
    if available >= needed.saturating_add(SPOOL_HEADROOM) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!(
            "the parallel restore would spool {} MiB to {}, which has {} MiB free (with {} MiB kept free)",
            mib(needed),
            dir.display(),
            mib(available),
            mib(SPOOL_HEADROOM)
        ),
    )
    .with_operation("restore")
    .with_hint("set spool_dir(...) to a volume with room for the dump, or restore with jobs(1), which streams without a spool file"))
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
#[cfg(unix)]
fn available_space(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
fn available_space(_dir: &std::path::Path) -> std::io::Result<u64> {
    // No portable query: let the write itself fail if the disk is full.
    Ok(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_that_does_not_fit_is_refused_naming_the_sizes_and_the_fix() {
        let dir = std::path::Path::new("/var/spool/stoa");
        let gib = 1024 * 1024 * 1024;
        assert!(spool_fits(dir, 2 * gib, 3 * gib).is_ok());
        let e = spool_fits(dir, 2 * gib, 2 * gib).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let text = e.to_string();
        assert!(
            text.contains("2048 MiB") && text.contains("/var/spool/stoa"),
            "{text}"
        );
        assert!(e.hint().unwrap_or_default().contains("spool_dir"), "{e:?}");
    }

    #[test]
    fn the_free_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_space(dir.path()).unwrap() > 0);
        assert!(check_spool_space(Some(dir.path()), 1).is_ok());
        let e = check_spool_space(Some(dir.path()), u64::MAX / 2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let missing = dir.path().join("missing");
        assert!(check_spool_space(Some(&missing), 1).is_err());
    }

    #[tokio::test]
    async fn capture_error_ends_the_stream_and_keeps_the_error() {
        let s: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"ab")),
            Err(Error::integrity("bad")),
            Ok(bytes::Bytes::from_static(b"cd")),
        ]));
        let (s, slot) = capture_error(s);
        let out = stoa_backup_core::stream::collect(s).await.unwrap();
        assert_eq!(out, b"ab");
        assert_eq!(
            slot.lock().unwrap().as_ref().unwrap().kind(),
            ErrorKind::Integrity
        );
    }
}

//! Running `pg_restore` on a stream of dump bytes (or a spooled file for parallel restores),
//! reporting a damaged input as such rather than as whatever pg_restore made of it.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::process::{run_with_stdin, CommandSpec};
use stoa_backup_core::stream::ByteStream;
use tokio::io::AsyncWriteExt;

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

/// Writes a stream to a temp file (for parallel restores, which need a seekable file).
pub(crate) async fn spool_to_file(
    mut plain: ByteStream,
    dir: Option<&std::path::Path>,
) -> Result<tempfile::NamedTempFile> {
    let mut b = tempfile::Builder::new();
    b.prefix("stoa-restore-").suffix(".dump");
    let tmp = match dir {
        Some(d) => b.tempfile_in(d),
        None => b.tempfile(),
    }
    .map_err(|e| Error::from_io(e, "cannot create a spool file for the parallel restore"))?;
    let std_file = tmp
        .reopen()
        .map_err(|e| Error::from_io(e, "cannot open the spool file"))?;
    let mut f = tokio::fs::File::from_std(std_file);
    while let Some(chunk) = plain.next().await {
        let chunk = chunk?;
        f.write_all(&chunk)
            .await
            .map_err(|e| Error::from_io(e, "writing the spool file failed"))?;
    }
    f.flush()
        .await
        .map_err(|e| Error::from_io(e, "flushing the spool file failed"))?;
    f.sync_all().await.ok();
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

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

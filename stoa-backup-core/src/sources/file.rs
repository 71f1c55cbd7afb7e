//! Files and directories as artifacts (directories as tar streams).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::ArtifactRecord;
use crate::restore::{
    restore_each, ExistingDataPolicy, PerArtifact, RestoreContext, RestoreOptions, RestoreReport,
    Restorer,
};
use crate::source::{ArtifactPlan, Export, ExportContext, PreflightReport, Source};
use crate::stream::{from_reader, into_reader, ByteStream, CHUNK_SIZE};

const TAR: &str = "application/x-tar";

/// Streams a file as-is, or a directory as a tar stream (entries in sorted order, so the
/// same tree gives the same bytes).
#[derive(Debug, Clone)]
pub struct FileSource {
    component: String,
    path: PathBuf,
    name: String,
    sensitive: bool,
}

impl FileSource {
    /// A source for `component` reading `path`, stored as artifact `name`.
    pub fn new(
        component: impl Into<String>,
        path: impl Into<PathBuf>,
        name: impl Into<String>,
    ) -> Self {
        FileSource {
            component: component.into(),
            path: path.into(),
            name: name.into(),
            sensitive: false,
        }
    }

    /// Marks the content as holding secrets.
    pub fn sensitive(mut self, sensitive: bool) -> Self {
        self.sensitive = sensitive;
        self
    }

    fn err(&self, e: std::io::Error, op: &str) -> Error {
        Error::from_io(e, format!("cannot read {}", self.path.display()))
            .with_component(self.component.clone())
            .with_operation(op.to_string())
            .with_artifact(self.name.clone())
    }
}

#[async_trait]
impl Source for FileSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        "file"
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| self.err(e, "preflight"))?;
        Ok(PreflightReport::default())
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        let meta = tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| self.err(e, "discover"))?;
        let content_type = if meta.is_dir() {
            TAR
        } else {
            "application/octet-stream"
        };
        Ok(vec![ArtifactPlan::new(self.name.clone(), content_type)
            .sensitive(self.sensitive)
            .fact("path", self.path.display().to_string())])
    }

    async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        if artifact.content_type == TAR {
            return Ok(Export::new(tar_stream(
                self.path.clone(),
                self.component.clone(),
            )));
        }
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| self.err(e, "export"))?;
        Ok(Export::new(from_reader(file)))
    }
}

/// A writer that sends what it gets over a bounded channel (backpressure for the tar thread).
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_SIZE),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_SIZE {
            self.send_buf()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()
    }
}

fn tar_stream(root: PathBuf, component: String) -> ByteStream {
    let (tx, rx) = mpsc::channel(4);
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK_SIZE),
        };
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        let result = append_sorted(&mut builder, &root, Path::new(""))
            .and_then(|_| builder.into_inner())
            .and_then(|mut w| std::io::Write::flush(&mut w));
        if let Err(e) = result {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                let err = Error::from_io(e, format!("cannot archive {}", root.display()))
                    .with_component(component)
                    .with_operation("export");
                err_tx.blocking_send(Err(err)).ok();
            }
        }
    });
    Box::pin(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes>>,
) -> impl futures::Stream<Item = Result<Bytes>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn append_sorted<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
) -> std::io::Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel_path = rel.join(e.file_name());
        let ft = e.file_type()?;
        if ft.is_dir() {
            b.append_dir(&rel_path, e.path())?;
            append_sorted(b, root, &rel_path)?;
        } else {
            b.append_path_with_name(e.path(), &rel_path)?;
        }
    }
    Ok(())
}

/// Restores [`FileSource`] artifacts: a file to a path, a tar stream into a directory.
///
/// Nothing is written under the target before the artifact was read to its end and checked
/// against its recorded digest: a file is written beside the target and renamed over it, a
/// tar is unpacked into a staging directory beside the target and then moved in (renamed
/// whole when the target does not exist). The objects counted are files (a tar's
/// directories are structure). Existing data follows the policy: `Fail` refuses an existing
/// file or a non-empty directory, `Skip` keeps the files that exist (counted skipped) and
/// restores the missing ones, `Overwrite` replaces them (counted updated). A plan reads a
/// tar's listing, and so checks it, to count what the restore will do. Tar entries that
/// would escape the target directory are refused.
#[derive(Debug, Clone)]
pub struct FileRestorer {
    component: String,
    target: PathBuf,
}

impl FileRestorer {
    /// Restores `component` artifacts to `target` (a file path, or a directory for tars).
    pub fn new(component: impl Into<String>, target: impl Into<PathBuf>) -> Self {
        FileRestorer {
            component: component.into(),
            target: target.into(),
        }
    }

    fn conflict(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Conflict,
            format!("{} {what}", self.target.display()),
        )
        .with_hint("restore into an empty location, or choose the skip or overwrite policy")
    }

    async fn restore_file(
        &self,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        if tokio::fs::symlink_metadata(&self.target).await.is_ok() {
            match options.existing {
                ExistingDataPolicy::Fail => return Err(self.conflict("already exists")),
                ExistingDataPolicy::Skip => {
                    report.skipped = 1;
                    report
                        .notes
                        .push(format!("{} exists: kept", self.target.display()));
                    return Ok(report);
                }
                ExistingDataPolicy::Overwrite => report.updated = 1,
            }
        } else {
            report.created = 1;
        }
        if options.dry_run {
            report
                .notes
                .push(format!("would write {}", self.target.display()));
            return Ok(report);
        }
        let mut reader = into_reader(plain);
        let tmp = staging_path(&self.target);
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Error::from_io(e, "cannot create target"))?;
        let copied = tokio::io::copy(&mut reader, &mut f).await;
        if let Err(e) = copied {
            tokio::fs::remove_file(&tmp).await.ok();
            return Err(Error::from(e));
        }
        f.sync_all()
            .await
            .map_err(|e| Error::from_io(e, "fsync failed"))?;
        tokio::fs::rename(&tmp, &self.target)
            .await
            .map_err(|e| Error::from_io(e, "rename failed"))?;
        Ok(report)
    }

    async fn restore_tar(
        &self,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        match tokio::fs::metadata(&self.target).await {
            Ok(m) if !m.is_dir() => return Err(self.conflict("exists and is not a directory")),
            Ok(_) if options.existing == ExistingDataPolicy::Fail => {
                let mut rd = tokio::fs::read_dir(&self.target)
                    .await
                    .map_err(|e| Error::from_io(e, "cannot read the target directory"))?;
                if rd.next_entry().await.ok().flatten().is_some() {
                    return Err(self.conflict("is not empty"));
                }
            }
            _ => {}
        }
        if options.dry_run {
            let entries = read_tar(plain, None).await?;
            for (f, _) in entries.iter().filter(|(_, dir)| !dir) {
                if tokio::fs::symlink_metadata(self.target.join(f))
                    .await
                    .is_ok()
                {
                    match options.existing {
                        ExistingDataPolicy::Skip => report.skipped += 1,
                        ExistingDataPolicy::Overwrite => report.updated += 1,
                        ExistingDataPolicy::Fail => report.conflicts += 1,
                    }
                } else {
                    report.created += 1;
                }
            }
            report
                .notes
                .push(format!("would unpack into {}", self.target.display()));
            return Ok(report);
        }
        let staging = staging_path(&self.target);
        let moved = match read_tar(plain, Some(staging.clone())).await {
            Ok(files) => move_in(&staging, &self.target, files, options.existing).await,
            Err(e) => Err(e),
        };
        if tokio::fs::try_exists(&staging).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&staging).await.ok();
        }
        let (created, updated, skipped) = moved?;
        report.created = created;
        report.updated = updated;
        report.skipped = skipped;
        Ok(report)
    }
}

/// A name beside `target` for what is written before it takes its place.
fn staging_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!("{name}.stoa-restore-{:08x}", rand::random::<u32>()))
}

/// Reads a tar stream to its end: the relative paths of its entries, each with whether it is
/// a directory; with `unpack_into`, unpacked there (a directory it creates). A damaged or cancelled stream
/// fails with its own error, even where the tar reader turned it into one of its own.
async fn read_tar(plain: ByteStream, unpack_into: Option<PathBuf>) -> Result<Vec<(PathBuf, bool)>> {
    let slot: std::sync::Arc<std::sync::Mutex<Option<Error>>> = Default::default();
    let kept = slot.clone();
    // The first error ends the stream (the reader sees EOF) and is kept to be reported.
    let stream = plain
        .map(move |item| match item {
            Ok(b) => Some(Ok(b)),
            Err(e) => {
                kept.lock().expect("error slot").get_or_insert(e);
                None
            }
        })
        .take_while(|x| futures::future::ready(x.is_some()))
        .filter_map(futures::future::ready);
    let reader = tokio_util::io::SyncIoBridge::new(into_reader(Box::pin(stream)));
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(PathBuf, bool)>> {
        if let Some(dir) = &unpack_into {
            std::fs::create_dir(dir)?;
        }
        let mut archive = tar::Archive::new(reader);
        let mut entries = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let rel: PathBuf = entry
                .path()?
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            entries.push((rel, entry.header().entry_type().is_dir()));
            if let Some(dir) = &unpack_into {
                // unpack_in refuses paths that leave the directory.
                entry.unpack_in(dir)?;
            }
        }
        // To the end, so that the digest is checked before anything is moved in.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
        Ok(entries)
    })
    .await
    .map_err(|e| Error::internal(format!("unpack task: {e}")));
    if let Some(e) = slot.lock().expect("error slot").take() {
        return Err(e);
    }
    Ok(read??)
}

/// Moves the unpacked `entries` from `staging` into `target` under `policy`: the whole
/// directory when `target` does not exist. Returns the files (created, updated, skipped).
async fn move_in(
    staging: &Path,
    target: &Path,
    entries: Vec<(PathBuf, bool)>,
    policy: ExistingDataPolicy,
) -> Result<(u64, u64, u64)> {
    let (staging, target) = (staging.to_path_buf(), target.to_path_buf());
    tokio::task::spawn_blocking(move || -> std::io::Result<(u64, u64, u64)> {
        if std::fs::symlink_metadata(&target).is_err() {
            std::fs::rename(&staging, &target)?;
            let files = entries.iter().filter(|(_, dir)| !dir).count();
            return Ok((files as u64, 0, 0));
        }
        let (mut created, mut updated, mut skipped) = (0, 0, 0);
        for (rel, dir) in entries {
            let (from, to) = (staging.join(&rel), target.join(&rel));
            if dir {
                std::fs::create_dir_all(&to)?;
                continue;
            }
            if std::fs::symlink_metadata(&to).is_ok() {
                if policy != ExistingDataPolicy::Overwrite {
                    skipped += 1;
                    continue;
                }
                updated += 1;
            } else {
                created += 1;
            }
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&from, &to)?;
        }
        Ok((created, updated, skipped))
    })
    .await
    .map_err(|e| Error::internal(format!("move task: {e}")))?
    .map_err(|e| Error::from_io(e, "cannot move the restored files into place"))
}

#[async_trait]
impl Restorer for FileRestorer {
    fn component(&self) -> &str {
        &self.component
    }

    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        restore_each(self, ctx).await
    }
}

#[async_trait]
impl PerArtifact for FileRestorer {
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let restored = if artifact.content_type == TAR {
            self.restore_tar(plain, options).await
        } else {
            self.restore_file(plain, options).await
        };
        restored.map_err(|e| {
            e.or_component(self.component.clone())
                .or_operation("restore")
                .or_artifact(artifact.key.to_string())
        })
    }
}

//! Files and directories as artifacts (directories as tar streams).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
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
/// Tar entries that would escape the target directory are refused.
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
        let exists = tokio::fs::try_exists(&self.target).await.unwrap_or(false);
        let non_empty_dir = exists
            && match tokio::fs::read_dir(&self.target).await {
                Ok(mut rd) => rd.next_entry().await.ok().flatten().is_some(),
                Err(_) => true,
            };
        if (non_empty_dir || (exists && artifact.content_type != TAR))
            && options.existing == ExistingDataPolicy::Fail
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{} already exists", self.target.display()),
            )
            .with_component(self.component.clone())
            .with_operation("restore")
            .with_artifact(artifact.key.to_string())
            .with_hint("restore into an empty location, or choose the overwrite policy"));
        }
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        if options.dry_run {
            report
                .notes
                .push(format!("would write {}", self.target.display()));
            return Ok(report);
        }
        if artifact.content_type == TAR {
            tokio::fs::create_dir_all(&self.target)
                .await
                .map_err(|e| Error::from_io(e, "cannot create target"))?;
            let reader = tokio_util::io::SyncIoBridge::new(into_reader(plain));
            let target = self.target.clone();
            let count = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
                let mut archive = tar::Archive::new(reader);
                let mut n = 0;
                for entry in archive.entries()? {
                    // unpack_in refuses paths that leave the target directory.
                    if entry?.unpack_in(&target)? {
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await
            .map_err(|e| Error::internal(format!("unpack task: {e}")))?
            .map_err(|e| {
                Error::from(e)
                    .or_component(self.component.clone())
                    .or_operation("restore")
            })?;
            report.created = count;
        } else {
            let mut reader = into_reader(plain);
            let tmp = self.target.with_extension("stoa-restore-tmp");
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| Error::from_io(e, "cannot create target"))?;
            let copied = tokio::io::copy(&mut reader, &mut f).await;
            if let Err(e) = copied {
                tokio::fs::remove_file(&tmp).await.ok();
                return Err(Error::from(e)
                    .or_component(self.component.clone())
                    .or_operation("restore"));
            }
            f.sync_all()
                .await
                .map_err(|e| Error::from_io(e, "fsync failed"))?;
            tokio::fs::rename(&tmp, &self.target)
                .await
                .map_err(|e| Error::from_io(e, "rename failed"))?;
            report.created = 1;
        }
        Ok(report)
    }
}

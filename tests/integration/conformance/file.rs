//! The core [`FileRestorer`] restoring a directory (a tar artifact) backed up by
//! [`FileSource`], compressed and encrypted, into a directory.
//!
//! The target is `<root>/target` in a fresh temporary root; its state is every file and
//! directory under the root (so that whatever a restore leaves beside the target shows), its
//! writes a fingerprint of the target's tree (paths, sizes, modification times).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use stoa_backup::core::{
    FileRestorer, FileSource, MemorySink, Pipeline, Restorer, RunStatus, ZstdCodec,
};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, Capabilities, HarnessBackup, RestorerHarness, TargetState,
};

const COMPONENT: &str = "files";

struct FileHarness {
    source: tempfile::TempDir,
    root: Mutex<tempfile::TempDir>,
}

impl FileHarness {
    fn new() -> Self {
        let source = tempfile::tempdir().unwrap();
        let p = source.path();
        std::fs::create_dir_all(p.join("nested/deeper")).unwrap();
        std::fs::write(p.join("a.txt"), "alpha\n".repeat(700)).unwrap();
        std::fs::write(p.join("nested/b.json"), br#"{"tenant":"acme"}"#).unwrap();
        let noise: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(p.join("nested/deeper/c.bin"), noise).unwrap();
        FileHarness {
            source,
            root: Mutex::new(tempfile::tempdir().unwrap()),
        }
    }

    fn root(&self) -> PathBuf {
        self.root.lock().unwrap().path().to_path_buf()
    }

    fn target(&self) -> PathBuf {
        self.root().join("target")
    }
}

/// Every entry under `dir`, by path relative to it (prefixed with `prefix`): files with
/// their content, directories as `dir`.
fn tree(dir: &Path, prefix: &str) -> TargetState {
    fn walk(dir: &Path, rel: &str, out: &mut TargetState) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = format!("{rel}{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{name}/"), "dir".into());
                walk(&e.path(), &format!("{name}/"), out);
            } else {
                let bytes = std::fs::read(e.path()).unwrap();
                out.insert(name, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    let mut out = TargetState::new();
    walk(dir, prefix, &mut out);
    out
}

/// A hash of the paths, kinds, sizes and modification times under `path` (and of whether
/// it exists): it changes with every write there.
fn fingerprint(path: &Path) -> u64 {
    fn walk(p: &Path, h: &mut DefaultHasher) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            "absent".hash(h);
            return;
        };
        (p, m.is_dir(), m.len(), m.mtime(), m.mtime_nsec(), m.ino()).hash(h);
        if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            names.sort();
            for n in names {
                walk(&n, h);
            }
        }
    }
    let mut h = DefaultHasher::new();
    walk(path, &mut h);
    h.finish()
}

#[async_trait]
impl RestorerHarness for FileHarness {
    fn name(&self) -> String {
        "file (directory as tar)".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn backup(&self) -> HarnessBackup {
        let (encryption, keyring) = age_keys();
        let sink = Arc::new(MemorySink::new());
        let report = Pipeline::builder()
            .source(FileSource::new(COMPONENT, self.source.path(), "tree.tar"))
            .sink(sink.clone())
            .compression(ZstdCodec::new(1).unwrap())
            .encryption(encryption)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(
            report.status,
            RunStatus::Complete,
            "{:?}",
            report.manifest.failures
        );
        HarnessBackup {
            sink,
            manifest: report.manifest,
            keyring,
        }
    }

    async fn source_state(&self) -> TargetState {
        let mut s = tree(self.source.path(), "target/");
        s.insert("target/".into(), "dir".into());
        s
    }

    async fn fresh_target(&self) {
        *self.root.lock().unwrap() = tempfile::tempdir().unwrap();
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        Arc::new(FileRestorer::new(COMPONENT, self.target()))
    }

    async fn target_state(&self) -> TargetState {
        tree(&self.root(), "")
    }

    async fn populate_target_differently(&self) {
        let t = self.target();
        std::fs::create_dir_all(t.join("nested")).unwrap();
        std::fs::write(t.join("a.txt"), "changed since the backup\n").unwrap();
    }

    async fn writes(&self) -> u64 {
        fingerprint(&self.target())
    }
}

#[tokio::test]
async fn the_file_restorer_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&FileHarness::new()).await;
}

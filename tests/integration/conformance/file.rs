//! The core [`FileRestorer`] restoring what [`FileSource`] backed up (compressed and
//! encrypted): a directory (a tar artifact) into a directory, and a single file to a path
//! (one object: an existing file is a conflict, kept, or replaced whole).
//!
//! The target is `<root>/target` in a fresh temporary root; its state is every file and
//! directory under the root (so that whatever a restore leaves beside the target shows), its
//! writes a fingerprint of the target's tree (paths, sizes, modification times).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use stoa_backup::core::{
    FileRestorer, FileSource, MemorySink, Pipeline, Restorer, RunStatus, ZstdCodec,
};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, Capabilities, ExistingData, HarnessBackup, RestorerHarness,
    TargetState,
};

use super::fingerprint;

const COMPONENT: &str = "files";

struct FileHarness {
    source: tempfile::TempDir,
    /// Whether the source is the directory, or one file in it.
    dir: bool,
    root: Mutex<tempfile::TempDir>,
}

impl FileHarness {
    fn new(dir: bool) -> Self {
        let source = tempfile::tempdir().unwrap();
        let p = source.path();
        std::fs::create_dir_all(p.join("nested/deeper")).unwrap();
        std::fs::write(p.join("a.txt"), "alpha\n".repeat(700)).unwrap();
        std::fs::write(p.join("nested/b.json"), br#"{"tenant":"acme"}"#).unwrap();
        let noise: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(p.join("nested/deeper/c.bin"), noise).unwrap();
        FileHarness {
            source,
            dir,
            root: Mutex::new(tempfile::tempdir().unwrap()),
        }
    }

    fn source_path(&self) -> PathBuf {
        match self.dir {
            true => self.source.path().to_path_buf(),
            false => self.source.path().join("a.txt"),
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

#[async_trait]
impl RestorerHarness for FileHarness {
    fn name(&self) -> String {
        match self.dir {
            true => "file (directory as tar)".into(),
            false => "file (one file)".into(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        match self.dir {
            true => Capabilities::default(),
            false => Capabilities {
                existing: ExistingData::Whole,
                ..Capabilities::default()
            },
        }
    }

    async fn backup(&self) -> HarnessBackup {
        let (encryption, keyring) = age_keys();
        let sink = Arc::new(MemorySink::new());
        let report = Pipeline::builder()
            .source(FileSource::new(COMPONENT, self.source_path(), "content"))
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
        if !self.dir {
            let text = std::fs::read_to_string(self.source_path()).unwrap();
            return [("target".to_string(), text)].into();
        }
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
        if !self.dir {
            std::fs::write(t, "changed since the backup\n").unwrap();
            return;
        }
        std::fs::create_dir_all(t.join("nested")).unwrap();
        std::fs::write(t.join("a.txt"), "changed since the backup\n").unwrap();
    }

    async fn writes(&self) -> u64 {
        fingerprint(&self.target())
    }
}

#[tokio::test]
async fn the_file_restorer_of_a_directory_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&FileHarness::new(true)).await;
}

#[tokio::test]
async fn the_file_restorer_of_one_file_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&FileHarness::new(false)).await;
}

//! Files on disk under a local sink's root, for the tests that look past the sink at what a
//! killed or interrupted process left behind.

use std::path::{Path, PathBuf};

use stoa_backup::storage::local::is_temp_name;

/// Every regular file under `dir`, sorted; unreadable directories are passed over.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// The local sink's temporary files (writes in progress) anywhere under `root`.
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_temp_name)
        })
        .collect()
}

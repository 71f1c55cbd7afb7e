//! Real signals to a real process: this test binary starts itself again as a child that runs
//! a pipeline with a source that never ends into a local sink, sends it SIGTERM (or SIGKILL)
//! while the artifact is being written, and checks what the child leaves in the directory.
//!
//! The child is [`signal_child`], an ignored test that does its work only when
//! [`CHILD_DIR_ENV`] names the backup directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use stoa_backup::core::{
    ArtifactPlan, ByteStream, Catalog, ErrorKind, Export, ExportContext, Pipeline, PreflightReport,
    Result, RunFilter, Sink, Source,
};
use stoa_backup::storage::LocalSink;

/// Set in the child's environment: the backup directory it writes into.
const CHILD_DIR_ENV: &str = "STOA_SIGNALS_TEST_CHILD_DIR";

/// Set (to any value) in the child's environment: the pipeline is not given the token, so
/// the first signal changes nothing and only a second one ends the child.
const CHILD_DEAF_ENV: &str = "STOA_SIGNALS_TEST_CHILD_DEAF";

/// Bytes the source yields before it stalls (or ends, when it is not slow).
const HEAD: usize = 256 * 1024;

/// A source of one artifact: [`HEAD`] bytes, then (when `stalls`) nothing more, ever, like a
/// database dump waiting on a lock.
#[derive(Debug)]
struct SlowSource {
    stalls: bool,
}

#[async_trait]
impl Source for SlowSource {
    fn component(&self) -> &str {
        "slow"
    }
    fn provider(&self) -> &str {
        "test"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan::new(
            "data.bin",
            "application/octet-stream",
        )])
    }
    async fn export(&self, _: &ArtifactPlan, _: &ExportContext) -> Result<Export> {
        let head = futures::stream::iter([Ok(Bytes::from(vec![7u8; HEAD]))]);
        let stream: ByteStream = if self.stalls {
            Box::pin(futures::StreamExt::chain(head, futures::stream::pending()))
        } else {
            Box::pin(head)
        };
        Ok(Export::new(stream))
    }
}

/// The child process: runs the stalling pipeline with the signal helper, as a program
/// would, and exits with the status the helper gives. Ignored: run only by the tests below.
#[test]
#[ignore = "the child process of the signal tests; it runs only with STOA_SIGNALS_TEST_CHILD_DIR set"]
fn signal_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        panic!("{CHILD_DIR_ENV} is not set: this test is the child of the other signal tests");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let deaf = std::env::var_os(CHILD_DEAF_ENV).is_some();
    let status = runtime.block_on(async move {
        let shutdown = stoa_backup::signals::listen().unwrap();
        let mut pipeline = Pipeline::builder()
            .source(SlowSource { stalls: true })
            .sink(LocalSink::new(PathBuf::from(dir)).unwrap());
        if !deaf {
            pipeline = pipeline.cancel(shutdown.token());
        }
        let pipeline = pipeline.build().unwrap();
        let result = pipeline.run().await;
        match shutdown.signal() {
            Some(signal) => {
                let err = result.expect_err("a cancelled run must fail");
                assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
                eprintln!("child: {signal} cancelled the run: {err}");
                signal.exit_status()
            }
            None => {
                eprintln!("child: the run ended without a signal: {result:?}");
                1
            }
        }
    });
    // Shutting the runtime down waits for filesystem work still in flight.
    drop(runtime);
    std::process::exit(i32::from(status));
}

/// Starts [`signal_child`] writing into `dir`.
fn start_child(dir: &Path) -> Child {
    child_command(dir).spawn().unwrap()
}

fn child_command(dir: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "signals::signal_child",
            "--nocapture",
            "--include-ignored",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env_remove(CHILD_DEAF_ENV)
        .stdout(Stdio::null());
    command
}

/// The temporary files under `dir/runs` (a put in progress).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    crate::files::temp_files(&dir.join("runs"))
}

/// Every file under `dir` with its content, sorted by path.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    crate::files::files_under(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Waits until the child has a temporary file with the source's first bytes in it.
fn wait_for_temp_file(child: &mut Child, dir: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = temp_files(dir)
            .into_iter()
            .find(|t| std::fs::metadata(t).is_ok_and(|m| m.len() >= HEAD as u64))
        {
            return t;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited before writing: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the child wrote no temporary file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with the pid of our own child and a valid signal number.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not exit after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A backup directory holding one complete run, and its files with their contents.
async fn directory_with_a_complete_run(tmp: &Path) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let dir = tmp.join("backups");
    std::fs::create_dir(&dir).unwrap();
    Pipeline::builder()
        .source(SlowSource { stalls: false })
        .sink(LocalSink::new(&dir).unwrap())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let files = snapshot(&dir);
    assert!(files.iter().any(|(p, _)| p.ends_with("manifest.json")));
    (dir, files)
}

/// The complete run's files are byte for byte as they were, no temporary file is left, and
/// no other run has a manifest.
fn assert_intact(before: &[(String, Vec<u8>)], dir: &Path) {
    let after = snapshot(dir);
    for file in before {
        assert!(after.contains(file), "{} changed or vanished", file.0);
    }
    assert!(
        after.iter().all(|(p, _)| !p.contains(".tmp-")),
        "temporary files left: {:?}",
        after.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let manifests = after
        .iter()
        .filter(|(p, _)| p.ends_with("manifest.json"))
        .count();
    assert_eq!(manifests, 1, "the interrupted run has a manifest");
}

async fn complete_runs(dir: &Path) -> usize {
    Catalog::new(LocalSink::new(dir).unwrap())
        .list_runs(&RunFilter::default())
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_the_run_removes_its_temporary_file_and_exits_143() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, before) = directory_with_a_complete_run(tmp.path()).await;

    let mut child = start_child(&dir);
    let temp = wait_for_temp_file(&mut child, &dir);
    send(&child, libc::SIGTERM);
    let status = wait_for_exit(&mut child);

    assert_eq!(status.code(), Some(143), "{status}");
    assert!(!temp.exists(), "the temporary file survived SIGTERM");
    assert_eq!(temp_files(&dir), Vec::<PathBuf>::new());
    assert_intact(&before, &dir);
    assert_eq!(complete_runs(&dir).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leaves_the_temporary_file_until_a_later_preflight_or_cleanup() {
    use std::os::unix::process::ExitStatusExt;

    let tmp = tempfile::tempdir().unwrap();
    let (dir, before) = directory_with_a_complete_run(tmp.path()).await;

    let mut child = start_child(&dir);
    let temp = wait_for_temp_file(&mut child, &dir);
    send(&child, libc::SIGKILL);
    let status = wait_for_exit(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    // Nothing could run in the killed process: its temporary file stays, invisible.
    assert!(
        temp.exists(),
        "a killed process cannot have removed its file"
    );
    let sink = LocalSink::new(&dir).unwrap();
    assert!(
        sink.list("")
            .await
            .unwrap()
            .iter()
            .all(|o| !o.key.as_str().contains(".tmp-")),
        "a temporary file is listed"
    );
    assert_eq!(complete_runs(&dir).await, 1);

    // The next run's preflight keeps it while it is young (it may be a run still going)...
    sink.preflight().await.unwrap();
    assert!(temp.exists(), "preflight removed a fresh temporary file");
    // ... and removes it once it is older than stale_temp_after (a day by default).
    std::fs::File::open(&temp)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(25 * 3600))
        .unwrap();
    sink.preflight().await.unwrap();
    assert!(!temp.exists(), "preflight left a stale temporary file");
    assert_intact(&before, &dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_with_a_cutoff_removes_what_a_killed_run_left() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, before) = directory_with_a_complete_run(tmp.path()).await;
    let mut child = start_child(&dir);
    let temp = wait_for_temp_file(&mut child, &dir);
    send(&child, libc::SIGKILL);
    wait_for_exit(&mut child);

    let sink = LocalSink::new(&dir).unwrap();
    let report = sink
        .cleanup(chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(report.temp_files_removed, 0, "{report:?}");
    assert!(temp.exists());
    // The operator knows no run is going: everything written before now is a leftover.
    let report = sink.cleanup(chrono::Utc::now()).await.unwrap();
    assert_eq!(report.temp_files_removed, 1, "{report:?}");
    assert_eq!(report.bytes_freed, HEAD as u64, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    assert_intact(&before, &dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_with_its_own_status() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, before) = directory_with_a_complete_run(tmp.path()).await;
    // A program whose run does not watch the token: the first signal cannot stop it.
    let mut child = child_command(&dir)
        .env(CHILD_DEAF_ENV, "1")
        .spawn()
        .unwrap();
    let temp = wait_for_temp_file(&mut child, &dir);
    send(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal ended the process by itself"
    );
    send(&child, libc::SIGINT);
    let status = wait_for_exit(&mut child);
    assert_eq!(status.code(), Some(130), "{status}");
    // Exiting at once skips the cleanup: the file is left for a later sweep.
    assert!(temp.exists());
    let report = LocalSink::new(&dir)
        .unwrap()
        .cleanup(chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(report.temp_files_removed, 1, "{report:?}");
    assert_intact(&before, &dir);
}

//! Child processes whose stdout is an artifact (pg_dump, kubectl, tar…).
//!
//! The rules every process-backed source follows: the child is killed when its stream is
//! dropped (cancellation), and on Linux also when this process dies, however it dies (see
//! [`spawn_stdout_stream`]); a missing binary, a non-zero exit or death by a signal fails the
//! artifact with the tail of its stderr in the error; stdout bytes are counted.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio_util::io::ReaderStream;

use crate::error::{Error, ErrorKind, Result};
use crate::stream::{ByteStream, CHUNK_SIZE};

/// How much of a child's stderr is kept for error messages.
pub const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// What a finished child left behind.
#[derive(Debug, Clone)]
pub struct ProcessOutcome {
    /// The exit status.
    pub status: ExitStatus,
    /// Bytes the child wrote to stdout.
    pub stdout_bytes: u64,
    /// The last [`STDERR_TAIL_BYTES`] of stderr (lossy UTF-8).
    pub stderr_tail: String,
}

/// A description of a command that is safe to log: program and arguments, never the
/// environment (which is where passwords go).
#[derive(Clone)]
pub struct CommandSpec {
    /// Program to run (looked up in `PATH` when not a path).
    pub program: String,
    /// Arguments. Never put secrets here: they show in `ps` and in errors.
    pub args: Vec<String>,
    /// Extra environment variables. Values are never logged or shown in `Debug`.
    pub env: Vec<(String, String)>,
    /// Environment variables to remove (e.g. an inherited `PGPASSWORD`).
    pub env_remove: Vec<String>,
    /// Working directory.
    pub current_dir: Option<std::path::PathBuf>,
}

impl fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field(
                "env",
                &self
                    .env
                    .iter()
                    .map(|(k, _)| format!("{k}=<redacted>"))
                    .collect::<Vec<_>>(),
            )
            .field("env_remove", &self.env_remove)
            .field("current_dir", &self.current_dir)
            .finish()
    }
}

impl CommandSpec {
    /// A command with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        CommandSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            current_dir: None,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable (its value is never logged).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Removes an inherited environment variable.
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// The command line for messages: program and arguments.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn to_command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(d) = &self.current_dir {
            cmd.current_dir(d);
        }
        cmd
    }
}

/// A spawned child streaming its stdout.
pub struct ProcessStream {
    /// The child's stdout as a stream; yields an error as its last item if the child fails.
    pub stream: ByteStream,
    /// Resolves once the stream has ended with the child's outcome.
    pub outcome: oneshot::Receiver<ProcessOutcome>,
}

impl fmt::Debug for ProcessStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessStream").finish_non_exhaustive()
    }
}

/// Size asked for the pipe of a child's stdout (Linux; the default is 64 KiB). A read then
/// returns up to a whole [`CHUNK_SIZE`] chunk when the child is ahead, instead of 64 KiB
/// pieces that the pipeline would have to gather (copy) into larger chunks: at 2 GB a dump,
/// that copy and the per-chunk costs are a few percent of a core.
const STDOUT_PIPE_SIZE: i32 = 1024 * 1024;

/// Asks the kernel for a larger pipe to or from a child (its stdout, or the stdin a restore
/// streams a dump into), so each read or write moves a whole chunk instead of 64 KiB
/// pieces; best effort (an unprivileged process may get less than it asks for, up to
/// /proc/sys/fs/pipe-max-size: the default then stays).
#[cfg(target_os = "linux")]
fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own changes only its buffer size.
    let _ = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, STDOUT_PIPE_SIZE) };
}

#[cfg(not(target_os = "linux"))]
fn widen_pipe<T>(_pipe: &T) {}

/// A read of a child's stdout shorter than this, once the child has written
/// [`BULK_OUTPUT`], means the pipeline caught up with the child: the next read waits
/// [`READ_PAUSE`] so that it takes a larger piece. Without the pause each few kilobytes
/// pg_dump writes wake this process (and the wake-up crosses cores): about 40,000 reads,
/// as many `epoll_wait`s and the writer's wake-ups per 512 MiB dump — CPU the database
/// server and the compressor need.
const SMALL_READ: usize = 64 * 1024;
/// Output after which a child counts as a bulk producer (a dump), whose reads may wait.
const BULK_OUTPUT: u64 = 4 * 1024 * 1024;
/// How long a read waits after a short one. The 1 MiB pipe ([`STDOUT_PIPE_SIZE`]) holds
/// about 7 ms of a 150 MB/s dump, so the child never blocks on a full pipe meanwhile.
const READ_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Spawns `spec` and streams its stdout. `component` names the caller in errors.
///
/// `stdin`, when given, is copied into the child's stdin (then closed).
///
/// The child is killed when the stream is dropped. On Linux it is also killed (SIGKILL) when
/// this process dies without dropping it — killed itself with SIGKILL, by the OOM killer, or
/// aborted — so that no pg_dump waiting on a lock or a slow server lives on with its database
/// session after the backup is gone.
///
/// Reading a child that writes in bulk pauses for a millisecond after a short read (so the
/// next read takes a larger piece), so the stream needs a runtime with tokio's time driver,
/// as the pipeline does (`#[tokio::main]` and `Builder::enable_all` have it).
pub fn spawn_stdout_stream(
    spec: &CommandSpec,
    component: &str,
    stdin: Option<ByteStream>,
) -> Result<ProcessStream> {
    let mut cmd = spec.to_command();
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    let spawned = with_parent::spawn(cmd);
    #[cfg(not(target_os = "linux"))]
    let spawned = cmd.spawn();
    let mut child = spawned.map_err(|e| spawn_error(e, spec, component))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    widen_pipe(&stdout);
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_task = tokio::spawn(read_stderr_tail(stderr));
    let stdin_task = match (stdin, child.stdin.take()) {
        (Some(input), Some(pipe)) => {
            widen_pipe(&pipe);
            Some(tokio::spawn(copy_to_stdin(input, pipe)))
        }
        _ => None,
    };
    let (tx, rx) = oneshot::channel();
    let stream = ChildStream {
        stdout: ReaderStream::with_capacity(stdout, CHUNK_SIZE),
        state: State::Reading,
        pause: None,
        child: Some(child),
        stderr_task: Some(stderr_task),
        stdin_task,
        counted: Arc::new(AtomicU64::new(0)),
        outcome_tx: Some(tx),
        command: spec.display(),
        component: component.to_string(),
    };
    Ok(ProcessStream {
        stream: Box::pin(stream),
        outcome: rx,
    })
}

/// Children that die with this process (Linux).
///
/// `PR_SET_PDEATHSIG` sends the child a signal when its parent *thread* ends, not only the
/// process: a child spawned from a runtime's thread would be killed when that thread ends
/// (a blocking-pool thread idling out, a worker handed off by `block_in_place`, a runtime on
/// a short-lived thread). So children are spawned from one thread that lives as long as the
/// process, inside the caller's runtime context.
#[cfg(target_os = "linux")]
mod with_parent {
    use std::io;
    use std::sync::mpsc;
    use std::sync::OnceLock;

    use tokio::process::{Child, Command};

    type Job = Box<dyn FnOnce() + Send>;

    /// Spawns `cmd` from the spawner thread, with SIGKILL as its parent-death signal.
    pub(super) fn spawn(mut cmd: Command) -> io::Result<Child> {
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec; it only makes the
        // async-signal-safe system calls prctl and getppid, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The parent died between fork and prctl: no signal will come, so do not run.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _context = runtime.enter();
            // The caller waits for this answer; it cannot be gone before it arrives.
            tx.send(cmd.spawn()).ok();
        });
        spawner()?
            .send(job)
            .map_err(|_| io::Error::other("the thread that spawns child processes is gone"))?;
        rx.recv().map_err(|_| {
            io::Error::other("the thread that spawns child processes ended during the spawn")
        })?
    }

    /// The spawner thread's queue, started on first use.
    fn spawner() -> io::Result<&'static mpsc::Sender<Job>> {
        static SPAWNER: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
        SPAWNER
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name("stoa-backup-spawner".to_string())
                    .spawn(move || rx.into_iter().for_each(|job| job()))
                    .map(|_| tx)
                    .map_err(|e| {
                        format!("cannot start the thread that spawns child processes: {e}")
                    })
            })
            .as_ref()
            .map_err(|e| io::Error::other(e.clone()))
    }
}

/// Runs `spec` to completion, feeding `stdin` and discarding stdout, and checks its exit
/// status. Used by verifiers and restorers (`pg_restore`, `psql`).
pub async fn run_with_stdin(
    spec: &CommandSpec,
    component: &str,
    stdin: Option<ByteStream>,
) -> Result<ProcessOutcome> {
    run_collect(spec, component, stdin, 0).await.map(|(o, _)| o)
}

/// Runs `spec` to completion and returns its stdout (at most `max_stdout` bytes are kept;
/// the rest is read and counted but dropped). For small outputs like `pg_restore --list`.
pub async fn run_collect(
    spec: &CommandSpec,
    component: &str,
    stdin: Option<ByteStream>,
    max_stdout: usize,
) -> Result<(ProcessOutcome, Vec<u8>)> {
    use futures::StreamExt;
    let mut ps = spawn_stdout_stream(spec, component, stdin)?;
    let mut out = Vec::new();
    while let Some(chunk) = ps.stream.next().await {
        let chunk = chunk?;
        let room = max_stdout.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    let outcome = ps
        .outcome
        .await
        .map_err(|_| Error::internal("child outcome lost").with_component(component.to_string()))?;
    Ok((outcome, out))
}

fn spawn_error(e: std::io::Error, spec: &CommandSpec, component: &str) -> Error {
    let (kind, hint) = if e.kind() == std::io::ErrorKind::NotFound {
        (
            ErrorKind::Config,
            format!(
                "install '{}' or put it on PATH (or configure its full path)",
                spec.program
            ),
        )
    } else {
        (
            ErrorKind::Source,
            "check the program is executable".to_string(),
        )
    };
    Error::new(kind, format!("cannot start '{}': {e}", spec.program))
        .with_component(component.to_string())
        .with_operation("spawn")
        .with_hint(hint)
}

/// Reads `stderr` to its end and keeps the last [`STDERR_TAIL_BYTES`] (lossy UTF-8, trimmed).
/// Shared by every runner of child commands (local processes, pod exec).
pub async fn read_stderr_tail(mut stderr: impl AsyncRead + Unpin) -> String {
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL_BYTES);
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend(&buf[..n]);
                while tail.len() > STDERR_TAIL_BYTES {
                    tail.pop_front();
                }
            }
        }
    }
    let bytes: Vec<u8> = tail.into_iter().collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// Copies `input` into a command's stdin, then closes it, also when `input` fails (whose
/// error is returned). A stdin closed early by the command is not an error here: the
/// command's exit status tells why.
pub async fn copy_to_stdin(
    mut input: ByteStream,
    mut pipe: impl tokio::io::AsyncWrite + Unpin,
) -> Result<()> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    while let Some(chunk) = input.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // Close stdin so that the child stops waiting for more (a pod's stdin is not
                // closed by dropping its writer); the stream's error is the cause.
                pipe.shutdown().await.ok();
                return Err(e);
            }
        };
        if let Err(e) = pipe.write_all(&chunk).await {
            // The child closed stdin early (e.g. it failed); its exit status tells why.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    pipe.shutdown().await.ok();
    Ok(())
}

type WaitFuture = Pin<Box<dyn std::future::Future<Output = Result<ProcessOutcome>> + Send>>;

enum State {
    Reading,
    Waiting(WaitFuture),
    Done,
}

struct ChildStream {
    stdout: ReaderStream<tokio::process::ChildStdout>,
    state: State,
    /// Before the next read, after a short one ([`SMALL_READ`]).
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    child: Option<Child>,
    stderr_task: Option<tokio::task::JoinHandle<String>>,
    stdin_task: Option<tokio::task::JoinHandle<Result<()>>>,
    counted: Arc<AtomicU64>,
    outcome_tx: Option<oneshot::Sender<ProcessOutcome>>,
    command: String,
    component: String,
}

impl ChildStream {
    fn start_wait(&mut self) -> WaitFuture {
        let mut child = self.child.take().expect("child present while reading");
        let stderr_task = self.stderr_task.take();
        let stdin_task = self.stdin_task.take();
        let counted = self.counted.clone();
        let command = self.command.clone();
        let component = self.component.clone();
        Box::pin(async move {
            let status = child.wait().await.map_err(|e| {
                Error::from_io(e, format!("waiting for '{command}' failed"))
                    .with_component(component.clone())
            })?;
            let stderr_tail = match stderr_task {
                Some(t) => t.await.unwrap_or_default(),
                None => String::new(),
            };
            let stdin_result = match stdin_task {
                Some(t) => t
                    .await
                    .unwrap_or_else(|e| Err(Error::internal(format!("stdin task: {e}")))),
                None => Ok(()),
            };
            let outcome = ProcessOutcome {
                status,
                stdout_bytes: counted.load(Ordering::Relaxed),
                stderr_tail,
            };
            if !status.success() {
                return Err(exit_error(&outcome, &command, &component));
            }
            // The child succeeded, but its input did not arrive whole: that is a failure too.
            stdin_result.map_err(|e| e.or_component(component.clone()))?;
            Ok(outcome)
        })
    }
}

/// The error for a child that exited non-zero or was killed by a signal.
pub fn exit_error(outcome: &ProcessOutcome, command: &str, component: &str) -> Error {
    let how = describe_status(&outcome.status);
    let tail = if outcome.stderr_tail.is_empty() {
        "(no stderr output)".to_string()
    } else {
        outcome.stderr_tail.clone()
    };
    Error::new(
        ErrorKind::Source,
        format!("'{command}' {how}; stderr: {tail}"),
    )
    .with_component(component.to_string())
    .with_operation("run")
    .with_hint(
        "read the stderr above; fix the cause and re-run (nothing of this artifact was kept)",
    )
}

/// "exited with code 3" / "was killed by signal 9".
pub fn describe_status(status: &ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("was killed by signal {sig}");
        }
    }
    match status.code() {
        Some(c) => format!("exited with code {c}"),
        None => "ended abnormally".to_string(),
    }
}

impl Stream for ChildStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match &mut self.state {
                State::Reading => {
                    if let Some(pause) = &mut self.pause {
                        if std::future::Future::poll(pause.as_mut(), cx).is_pending() {
                            return Poll::Pending;
                        }
                        self.pause = None;
                    }
                    match Pin::new(&mut self.stdout).poll_next(cx) {
                        Poll::Ready(Some(Ok(chunk))) => {
                            let before = self
                                .counted
                                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            if chunk.len() < SMALL_READ && before >= BULK_OUTPUT {
                                self.pause = Some(Box::pin(tokio::time::sleep(READ_PAUSE)));
                            }
                            return Poll::Ready(Some(Ok(chunk)));
                        }
                        Poll::Ready(Some(Err(e))) => {
                            self.state = State::Done;
                            let err = Error::from_io(
                                e,
                                format!("reading stdout of '{}' failed", self.command),
                            )
                            .with_component(self.component.clone());
                            return Poll::Ready(Some(Err(err)));
                        }
                        Poll::Ready(None) => {
                            let fut = self.start_wait();
                            self.state = State::Waiting(fut);
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                State::Waiting(fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready(Ok(outcome)) => {
                        self.state = State::Done;
                        if let Some(tx) = self.outcome_tx.take() {
                            tx.send(outcome).ok();
                        }
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Err(e)) => {
                        self.state = State::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Pending => return Poll::Pending,
                },
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        // kill_on_drop covers the child; the helper tasks end with their pipes.
        if let Some(t) = &self.stdin_task {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::collect;

    #[tokio::test]
    async fn streams_stdout_and_reports_outcome() {
        let spec = CommandSpec::new("sh").args(["-c", "printf hello; echo warn >&2"]);
        let ps = spawn_stdout_stream(&spec, "test", None).unwrap();
        assert_eq!(collect(ps.stream).await.unwrap(), b"hello");
        let o = ps.outcome.await.unwrap();
        assert!(o.status.success());
        assert_eq!(o.stdout_bytes, 5);
        assert_eq!(o.stderr_tail, "warn");
    }

    #[tokio::test]
    async fn non_zero_exit_fails_with_stderr_tail() {
        let spec =
            CommandSpec::new("sh").args(["-c", "printf partial; echo 'disk on fire' >&2; exit 3"]);
        let ps = spawn_stdout_stream(&spec, "test", None).unwrap();
        let err = collect(ps.stream).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Source);
        let msg = err.to_string();
        assert!(msg.contains("exited with code 3"), "{msg}");
        assert!(msg.contains("disk on fire"), "{msg}");
    }

    #[tokio::test]
    async fn signal_death_is_reported() {
        let spec = CommandSpec::new("sh").args(["-c", "kill -9 $$"]);
        let ps = spawn_stdout_stream(&spec, "test", None).unwrap();
        let err = collect(ps.stream).await.unwrap_err();
        assert!(err.to_string().contains("signal 9"), "{err}");
    }

    #[tokio::test]
    async fn missing_binary_is_a_config_error() {
        let spec = CommandSpec::new("/nonexistent/pg_dump_xyz");
        let err = spawn_stdout_stream(&spec, "test", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.hint().unwrap().contains("install"));
    }

    #[tokio::test]
    async fn stdin_is_fed() {
        let spec = CommandSpec::new("sh").args(["-c", "wc -c"]);
        let (o, out) = run_collect(
            &spec,
            "test",
            Some(crate::stream::once(vec![b'x'; 100_000])),
            64,
        )
        .await
        .unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8(out).unwrap().trim(), "100000");
    }

    /// The parent-death signal is tied to the thread that spawns: a child spawned by a runtime
    /// on a thread that then ends must live on until its stream is dropped.
    #[cfg(target_os = "linux")]
    #[test]
    fn children_outlive_the_thread_that_spawned_them() {
        use futures::StreamExt;
        let spec = CommandSpec::new("sh").args(["-c", "echo $$; exec sleep 30"]);
        let (pid, ps) = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut ps = spawn_stdout_stream(&spec, "test", None).unwrap();
                let first = ps.stream.next().await.unwrap().unwrap();
                let pid: u32 = String::from_utf8_lossy(&first).trim().parse().unwrap();
                (pid, ps)
            })
        })
        .join()
        .unwrap();
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(alive(), "the child died with the thread that spawned it");
        drop(ps);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "dropping the stream did not kill the child"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn env_values_never_show_in_debug() {
        let spec = CommandSpec::new("pg_dump").env("PGPASSWORD", "s3cr3t-value");
        assert!(!format!("{spec:?}").contains("s3cr3t"));
    }
}

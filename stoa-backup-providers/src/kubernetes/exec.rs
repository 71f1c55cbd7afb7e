//! Exec into a pod and stream a command's stdout: the in-cluster counterpart of
//! [`stoa_backup_core::process`], with the same rules: stdout is a raw byte stream,
//! stderr is drained concurrently and its tail kept for errors, a non-zero exit fails the
//! stream with the tail of stderr, dropping the stream ends the remote command.

use std::fmt;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, AttachedProcess};
use kube::Client;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::process::{copy_to_stdin, read_stderr_tail, ProcessOutcome};
use stoa_backup_core::stream::{ByteStream, CHUNK_SIZE};
use tokio::sync::oneshot;
use tokio_util::io::ReaderStream;

use super::{kube_error, KubeClient};

/// What a finished remote command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The exit code reported on the status channel (0 on success).
    pub exit_code: i32,
    /// Bytes the command wrote to stdout.
    pub stdout_bytes: u64,
    /// The last [`STDERR_TAIL_BYTES`](stoa_backup_core::process::STDERR_TAIL_BYTES) of stderr (lossy UTF-8, trimmed).
    pub stderr_tail: String,
}

/// A running remote command streaming its stdout.
pub struct ExecStream {
    /// The command's stdout; yields an error as its last item if the command fails.
    pub stream: ByteStream,
    /// Resolves once the stream has ended successfully.
    pub outcome: oneshot::Receiver<ExecOutcome>,
}

impl fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecStream").finish_non_exhaustive()
    }
}

/// Runs commands in a pod's container through the API server's exec websocket
/// (`v5.channel.k8s.io`, falling back to `v4.channel.k8s.io`; kube's `ws` feature).
///
/// With v4 the end of stdin can only be signalled by closing the connection, so commands
/// that read stdin and then write output need a v5 server (Kubernetes ≥ 1.30).
#[derive(Debug, Clone)]
pub struct PodExec {
    client: KubeClient,
    namespace: String,
    pod: String,
    container: Option<String>,
    component: String,
}

impl PodExec {
    /// Exec into `pod` of `namespace` (the pod's default container unless
    /// [`PodExec::container`] is set).
    pub fn new(client: Client, namespace: impl Into<String>, pod: impl Into<String>) -> Self {
        PodExec {
            client: KubeClient(client),
            namespace: namespace.into(),
            pod: pod.into(),
            container: None,
            component: "kubernetes".into(),
        }
    }

    /// The container to run in.
    pub fn container(mut self, container: impl Into<String>) -> Self {
        self.container = Some(container.into());
        self
    }

    /// The component named in errors (e.g. `postgres`).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }

    /// `'pg_dump -Fc stoa' in pod db/pg-0 (container postgres)`, for messages.
    pub fn describe(&self, command: &[String]) -> String {
        let mut s = format!(
            "'{}' in pod {}/{}",
            command.join(" "),
            self.namespace,
            self.pod
        );
        if let Some(c) = &self.container {
            s.push_str(&format!(" (container {c})"));
        }
        s
    }

    /// Starts `command` and streams its stdout. `stdin`, when given, is copied to the
    /// command's stdin, which is then closed. Errors (the stream's too) name the
    /// [`PodExec::component`] and the `exec` operation.
    pub async fn spawn(&self, command: &[String], stdin: Option<ByteStream>) -> Result<ExecStream> {
        let name = {
            let component = self.component.clone();
            move |e: Error| e.or_component(component.clone()).or_operation("exec")
        };
        let es = self.start(command, stdin).await.map_err(&name)?;
        Ok(ExecStream {
            stream: Box::pin(es.stream.map_err(name)),
            outcome: es.outcome,
        })
    }

    async fn start(&self, command: &[String], stdin: Option<ByteStream>) -> Result<ExecStream> {
        if command.is_empty() {
            return Err(Error::config("empty command"));
        }
        let describe = self.describe(command);
        let mut ap = AttachParams::default()
            .stdin(stdin.is_some())
            .stdout(true)
            .stderr(true);
        if let Some(c) = &self.container {
            ap = ap.container(c);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.0.clone(), &self.namespace);
        let mut process = pods
            .exec(&self.pod, command.to_vec(), &ap)
            .await
            .map_err(|e| kube_error(e, &format!("exec {describe}")))?;
        let stdout = process.stdout().expect("stdout requested");
        let stderr = process.stderr().expect("stderr requested");
        let status = process.take_status().expect("status taken once");
        let stderr_task = tokio::spawn(read_stderr_tail(stderr));
        let stdin_task = match (stdin, process.stdin()) {
            (Some(input), Some(writer)) => Some(tokio::spawn(copy_to_stdin(input, writer))),
            _ => None,
        };
        let (tx, rx) = oneshot::channel();
        let state = State {
            stdout: ReaderStream::with_capacity(stdout, CHUNK_SIZE),
            process: Some(process),
            status: Some(Box::pin(status)),
            stderr_task: Some(stderr_task),
            stdin_task,
            counted: 0,
            tx: Some(tx),
            done: false,
            describe,
            component: self.component.clone(),
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            match st.stdout.next().await {
                Some(Ok(b)) => {
                    st.counted += b.len() as u64;
                    Some((Ok(b), st))
                }
                Some(Err(e)) => {
                    st.done = true;
                    let err =
                        Error::from_io(e, format!("reading stdout of {} failed", st.describe));
                    Some((Err(err), st))
                }
                None => {
                    st.done = true;
                    match st.finish().await {
                        Ok(()) => None,
                        Err(e) => Some((Err(e), st)),
                    }
                }
            }
        });
        Ok(ExecStream {
            stream: Box::pin(stream),
            outcome: rx,
        })
    }

    /// Runs `command` to completion and returns its stdout (at most `max_stdout` bytes are
    /// kept; the rest is read and dropped). Fails like [`PodExec::spawn`]'s stream.
    pub async fn run_collect(
        &self,
        command: &[String],
        stdin: Option<ByteStream>,
        max_stdout: usize,
    ) -> Result<(ExecOutcome, Vec<u8>)> {
        let mut es = self.spawn(command, stdin).await?;
        let mut out = Vec::new();
        while let Some(chunk) = es.stream.next().await {
            let chunk = chunk?;
            let room = max_stdout.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let outcome = es.outcome.await.map_err(|_| {
            Error::internal("exec outcome lost").with_component(self.component.clone())
        })?;
        Ok((outcome, out))
    }
}

type StatusFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Status>> + Send>>;

struct State {
    stdout: ReaderStream<tokio::io::ReadHalf<tokio::io::SimplexStream>>,
    process: Option<AttachedProcess>,
    status: Option<StatusFuture>,
    stderr_task: Option<tokio::task::JoinHandle<String>>,
    stdin_task: Option<tokio::task::JoinHandle<Result<()>>>,
    counted: u64,
    tx: Option<oneshot::Sender<ExecOutcome>>,
    done: bool,
    describe: String,
    component: String,
}

impl State {
    async fn finish(&mut self) -> Result<()> {
        let status = match self.status.take() {
            Some(f) => f.await,
            None => None,
        };
        let stderr_tail = match self.stderr_task.take() {
            Some(t) => t.await.unwrap_or_default(),
            None => String::new(),
        };
        let stdin_result = match self.stdin_task.take() {
            Some(t) => t
                .await
                .unwrap_or_else(|e| Err(Error::internal(format!("stdin task: {e}")))),
            None => Ok(()),
        };
        if let Some(p) = self.process.take() {
            p.join().await.ok();
        }
        // A stdin stream that failed (damaged, cancelled) is why the command saw its input
        // cut short: that error, not the command's, is the cause.
        stdin_result?;
        let code = match exit_code(status.as_ref()) {
            Ok(c) => c,
            Err(message) => {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!("{} failed: {message}", self.describe),
                )
                .with_hint("check the pod is running and the command exists in the container"));
            }
        };
        let outcome = ExecOutcome {
            exit_code: code,
            stdout_bytes: self.counted,
            stderr_tail,
        };
        if code != 0 {
            return Err(exec_exit_error(&outcome, &self.describe, &self.component));
        }
        if let Some(tx) = self.tx.take() {
            tx.send(outcome).ok();
        }
        Ok(())
    }
}

/// The exit code in an exec status: 0 for `Success`, the `ExitCode` cause otherwise;
/// `Err` when the status says something else went wrong (or never came).
fn exit_code(status: Option<&Status>) -> std::result::Result<i32, String> {
    let Some(s) = status else {
        return Err("the connection ended without an exit status".into());
    };
    if s.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let code = s
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.trim().parse::<i32>().ok());
    match code {
        Some(c) => Ok(c),
        None => Err(s
            .message
            .clone()
            .unwrap_or_else(|| "unknown failure".into())),
    }
}

/// The error for a remote command that exited non-zero: the same wording as
/// [`stoa_backup_core::process::exit_error`].
fn exec_exit_error(outcome: &ExecOutcome, describe: &str, component: &str) -> Error {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        // Kubernetes reports death by signal N as exit code 128+N, like a shell.
        let raw = if outcome.exit_code > 128 && outcome.exit_code < 160 {
            outcome.exit_code - 128
        } else {
            (outcome.exit_code & 0xff) << 8
        };
        let po = ProcessOutcome {
            status: std::process::ExitStatus::from_raw(raw),
            stdout_bytes: outcome.stdout_bytes,
            stderr_tail: outcome.stderr_tail.clone(),
        };
        stoa_backup_core::process::exit_error(&po, describe.trim_matches('\''), component)
            .with_operation("exec")
    }
    #[cfg(not(unix))]
    {
        let tail = if outcome.stderr_tail.is_empty() {
            "(no stderr output)"
        } else {
            &outcome.stderr_tail
        };
        Error::new(
            ErrorKind::Source,
            format!(
                "{describe} exited with code {}; stderr: {tail}",
                outcome.exit_code
            ),
        )
        .with_component(component.to_string())
        .with_operation("exec")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    #[test]
    fn exit_codes_from_status() {
        let ok = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(Some(&ok)), Ok(0));
        let fail = Status {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("2".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(exit_code(Some(&fail)), Ok(2));
        assert!(exit_code(None).is_err());
        let other = Status {
            status: Some("Failure".into()),
            message: Some("container not found".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(Some(&other)), Err("container not found".into()));
    }

    #[test]
    fn exit_error_matches_process_wording() {
        let o = ExecOutcome {
            exit_code: 3,
            stdout_bytes: 0,
            stderr_tail: "disk on fire".into(),
        };
        let e = exec_exit_error(&o, "'pg_dump' in pod db/pg-0", "postgres");
        let m = e.to_string();
        assert!(
            m.contains("exited with code 3")
                && m.contains("disk on fire")
                && m.contains("pod db/pg-0"),
            "{m}"
        );
        let o = ExecOutcome {
            exit_code: 137,
            stdout_bytes: 0,
            stderr_tail: String::new(),
        };
        assert!(exec_exit_error(&o, "x", "c")
            .to_string()
            .contains("signal 9"));
    }
}

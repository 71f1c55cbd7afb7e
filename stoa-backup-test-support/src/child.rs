//! Re-running the test binary as a child process that a test kills with SIGKILL at a chosen
//! point: the way to test what a real crash leaves behind (a dropped future runs destructors;
//! a killed process does not).
//!
//! The parent test starts its own test binary again ([`ChildTest::spawn`]) with
//! `--exact <child test> --nocapture --include-ignored` and the child's parameters in one
//! environment variable. The child test (marked `#[ignore]`, so that it runs only this way)
//! reads them with [`child_params`], does its work, and at the chosen point prints a marker
//! line on stdout ([`reached`]) and waits to be killed ([`block_thread_forever`], or an
//! endless `futures::future::pending()` in async code). The parent waits for the marker
//! ([`ChildTest::wait_for`]), looks at the child's own child processes
//! ([`ChildTest::descendants`]), and kills it ([`ChildTest::kill`]).
//!
//! Linux only: processes are found through `/proc`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// What starts a marker line on the child's stdout; the rest of the line is
/// `<name>` or `<name>=<value>`.
pub const MARKER_PREFIX: &str = "stoa-child-marker: ";

/// Prints the marker `name` (with `value`, if any) on stdout and flushes it: the parent's
/// [`ChildTest::wait_for`] returns the value.
pub fn reached(name: &str, value: Option<&str>) {
    let mut out = std::io::stdout().lock();
    let line = match value {
        Some(v) => format!("{MARKER_PREFIX}{name}={v}\n"),
        None => format!("{MARKER_PREFIX}{name}\n"),
    };
    // A parent that stopped reading is about to kill us: nothing to do about a failed write.
    if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("cannot print the marker {name}: {e}");
    }
}

/// Blocks the calling thread until the process is killed (for hooks that are plain functions,
/// such as an `Observer`; async hooks await `futures::future::pending()` instead).
pub fn block_thread_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// The parameters the parent passed in `var`, or `None` when the variable is not set (the
/// child test then runs outside its parent and should fail saying so).
pub fn child_params(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// A process seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its id.
    pub pid: u32,
    /// Its parent's id.
    pub ppid: u32,
    /// Its command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// Its state letter (`R`, `S`, `Z`…).
    pub state: char,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {}, state {})", self.comm, self.pid, self.state)
    }
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist (any more).
pub fn process(pid: u32) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses: it ends at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Process {
        pid,
        ppid,
        comm,
        state,
    })
}

/// Whether `pid` is a live process (a zombie is not: it has exited, only its entry is left).
pub fn is_alive(pid: u32) -> bool {
    process(pid).is_some_and(|p| p.state != 'Z')
}

/// Every live process whose parent chain leads to `pid` (children, grandchildren…).
pub fn descendants_of(pid: u32) -> Vec<Process> {
    let mut by_parent: BTreeMap<u32, Vec<Process>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(p) = process(p) {
                by_parent.entry(p.ppid).or_default().push(p);
            }
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(parent) = todo.pop() {
        for p in by_parent.remove(&parent).unwrap_or_default() {
            todo.push(p.pid);
            if p.state != 'Z' {
                out.push(p);
            }
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Waits up to `timeout` for every process of `procs` to be gone; returns those still alive.
pub async fn wait_gone(procs: &[Process], timeout: Duration) -> Vec<Process> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<Process> = procs.iter().filter_map(live_again).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `p` as it is now, if the same process is still alive (same pid and command name).
fn live_again(p: &Process) -> Option<Process> {
    process(p.pid).filter(|now| now.state != 'Z' && now.comm == p.comm)
}

/// Kills (SIGKILL) those of `procs` that are still alive, for the clean-up after a test
/// found them lingering. Returns what the `kill` command said when it failed.
pub fn kill_all(procs: &[Process]) -> Option<String> {
    let pids: Vec<String> = procs
        .iter()
        .filter(|p| live_again(p).is_some())
        .map(|p| p.pid.to_string())
        .collect();
    if pids.is_empty() {
        return None;
    }
    match std::process::Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => Some(e.to_string()),
    }
}

/// The test binary re-run as a child process, running one test.
pub struct ChildTest {
    test: String,
    child: Child,
    pid: u32,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Every stdout line read so far, for messages.
    seen: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for ChildTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildTest")
            .field("test", &self.test)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl ChildTest {
    /// Starts this test binary again running only `test` (its full name, e.g.
    /// `faults::child::killable_backup`), with `env` set. The child is killed if this value
    /// is dropped. Call it inside a Tokio runtime (its stderr is read by a task).
    ///
    /// # Panics
    /// When the binary cannot be found or started.
    pub fn spawn(test: &str, env: &[(&str, String)]) -> ChildTest {
        let exe = std::env::current_exe().expect("the path of the running test binary");
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", test, "--nocapture", "--include-ignored"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot re-run {} as a child: {e}", exe.display()));
        let pid = child.id().expect("a child that was just spawned has an id");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stderr_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        ChildTest {
            test: test.to_string(),
            child,
            pid,
            stdout,
            seen: Vec::new(),
            stderr,
            stderr_task,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Reads the child's stdout until the marker `name` (see [`reached`]) and returns its
    /// value (empty without one).
    ///
    /// # Panics
    /// When the child's stdout ends first (it exited) or `timeout` passes, with what the
    /// child printed.
    pub async fn wait_for(&mut self, name: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.stdout.next_line()).await {
                Err(_) => panic!(
                    "the child test {} did not reach the marker {name:?} within {timeout:?}\n{}",
                    self.test,
                    self.output()
                ),
                Ok(Err(e)) => panic!("cannot read the child's stdout: {e}\n{}", self.output()),
                Ok(Ok(None)) => {
                    // Give stderr a moment to arrive in full: it says why the child ended.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    panic!(
                        "the child test {} ended before the marker {name:?}\n{}",
                        self.test,
                        self.output()
                    )
                }
                Ok(Ok(Some(line))) => line,
            };
            self.seen.push(line.clone());
            let Some(marker) = line.strip_prefix(MARKER_PREFIX) else {
                continue;
            };
            match marker.split_once('=') {
                Some((n, value)) if n == name => return value.to_string(),
                None if marker == name => return String::new(),
                _ => {}
            }
        }
    }

    /// The child's exit status if it has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The live processes the child started (and theirs), as they are now.
    pub fn descendants(&self) -> Vec<Process> {
        descendants_of(self.pid)
    }

    /// Kills the child with SIGKILL and reaps it. Its own children are left alone: what
    /// becomes of them is what a test looks at.
    ///
    /// # Panics
    /// When the child cannot be killed, or had exited before it was.
    pub async fn kill(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the child test {} had already exited ({status}) when it was to be killed\n{}",
                self.test,
                self.output()
            );
        }
        // std's and tokio's kill are SIGKILL on Unix.
        self.child.start_kill().expect("SIGKILL the child");
        let status = self.child.wait().await.expect("reap the killed child");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(9),
                "the child did not die of SIGKILL: {status}"
            );
        }
        status
    }

    /// What the child printed so far: stdout lines read and stderr, for messages.
    pub fn output(&self) -> String {
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        format!(
            "--- child stdout ---\n{}\n--- child stderr ---\n{}",
            self.seen.join("\n"),
            String::from_utf8_lossy(&stderr)
        )
    }
}

impl Drop for ChildTest {
    fn drop(&mut self) {
        // kill_on_drop covers the child; the stderr reader ends with its pipe.
        self.stderr_task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_its_children() {
        let me = process(std::process::id()).expect("this process in /proc");
        assert_eq!(me.pid, std::process::id());
        assert!(me.state != 'Z');
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = sleeper.id();
        let kids = descendants_of(std::process::id());
        let found = kids
            .iter()
            .find(|p| p.pid == pid)
            .expect("sleep is a child");
        assert_eq!(found.comm, "sleep");
        assert_eq!(found.ppid, std::process::id());
        assert!(is_alive(pid));
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(!is_alive(pid));
        assert!(process(u32::MAX).is_none());
    }

    #[tokio::test]
    async fn wait_gone_reports_what_lives_on_and_kill_all_ends_it() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let procs = vec![process(sleeper.id()).unwrap()];
        let alive = wait_gone(&procs, Duration::from_millis(100)).await;
        assert_eq!(alive.len(), 1, "{alive:?}");
        assert_eq!(kill_all(&procs), None);
        sleeper.wait().unwrap();
        assert!(wait_gone(&procs, Duration::from_secs(5)).await.is_empty());
    }
}

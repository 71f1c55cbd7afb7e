//! Shared by the benchmarks: peak RSS, and measuring one run in a fresh child process (this
//! binary, re-executed) so its peak RSS is its own and not memory that earlier runs left in
//! the allocator.
// Each bench uses part of this module.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::time::Duration;

/// Set in a child's environment to the job it must run.
const CHILD_ENV: &str = "STOA_BENCH_CHILD";
/// Prefix of the one line a child prints with its figures.
const RESULT_TAG: &str = "STOA_BENCH_RESULT";
/// Prefix of the lines a child prints about its run (what it stored, what it checked).
const NOTE_TAG: &str = "STOA_BENCH_NOTE ";

/// What a child reports about its run.
pub struct Measured {
    pub wall: Duration,
    pub stored: u64,
    /// `None` where the platform does not tell (no `/proc`).
    pub peak_rss: Option<u64>,
    /// What the child said about its run, in order (see [`note`]).
    pub notes: Vec<String>,
    /// CPU time the whole machine was busy meanwhile ([`machine_busy`]).
    pub cpu: Option<Duration>,
}

/// CPU time the whole machine has been busy since boot (user, nice, system, irq and
/// softirq of every core, from `/proc/stat`): around a run, the CPU it cost every process
/// involved, the database server's included; `None` without `/proc`.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq …
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(busy as f64 / hz as f64))
}

/// The CPU time the machine spent busy while `f` ran.
pub fn busy_during<T>(f: impl FnOnce() -> T) -> (T, Option<Duration>) {
    let before = machine_busy();
    let out = f();
    let cpu = match (before, machine_busy()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    (out, cpu)
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// The job this process must run, when it is a measuring child.
pub fn child_job() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Child side: prints the run's figures with this process's peak RSS.
pub fn report(wall: Duration, stored: u64) {
    println!(
        "{RESULT_TAG} {} {stored} {}",
        wall.as_nanos(),
        peak_rss().unwrap_or(0)
    );
}

/// Child side: one line about the run for the parent to show (before [`report`]).
pub fn note(line: &str) {
    println!("{NOTE_TAG}{}", line.replace('\n', " "));
}

/// Parent side: runs `job` in a child process (with `envs` added) and reads its figures.
pub fn measure_in_child(job: &str, envs: &[(&str, &OsStr)]) -> Measured {
    let exe = std::env::current_exe().expect("path of the benchmark binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.env(CHILD_ENV, job)
        .stderr(std::process::Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (out, cpu) = busy_during(|| cmd.output().expect("start the measuring child process"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "measuring child {job:?} failed: {}\n{stdout}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_TAG))
        .unwrap_or_else(|| panic!("no result from the measuring child {job:?}:\n{stdout}"));
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("a number in the child's result"))
        .collect();
    assert_eq!(f.len(), 3, "malformed result line from the child: {line}");
    Measured {
        wall: Duration::from_nanos(f[0]),
        stored: f[1],
        peak_rss: (f[2] > 0).then_some(f[2]),
        notes: stdout
            .lines()
            .filter_map(|l| l.strip_prefix(NOTE_TAG))
            .map(str::to_string)
            .collect(),
        cpu,
    }
}

/// How many times a measured run is repeated (`STOA_BENCH_REPEAT`, default 3).
pub fn repeat() -> usize {
    std::env::var("STOA_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// [`measure_in_child`] `n` times: the median wall time and the median peak RSS. Both vary
/// by a few percent from run to run on a busy machine; one sample would be noise.
pub fn measure_median(job: &str, envs: &[(&str, &OsStr)], n: usize) -> Measured {
    let runs: Vec<Measured> = (0..n.max(1)).map(|_| measure_in_child(job, envs)).collect();
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let walls = runs.iter().map(|r| r.wall.as_nanos() as u64).collect();
    let peaks: Vec<u64> = runs.iter().filter_map(|r| r.peak_rss).collect();
    let cpus: Vec<u64> = runs
        .iter()
        .filter_map(|r| r.cpu.map(|c| c.as_nanos() as u64))
        .collect();
    Measured {
        cpu: (!cpus.is_empty()).then(|| Duration::from_nanos(median(cpus.clone()))),
        wall: Duration::from_nanos(median(walls)),
        stored: runs[0].stored,
        peak_rss: (!peaks.is_empty()).then(|| median(peaks)),
        notes: runs.last().map(|r| r.notes.clone()).unwrap_or_default(),
    }
}

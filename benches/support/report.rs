//! The figures of one benchmark run: a table per size, the ratios of issue #13 against their
//! targets, the flatness of our memory across sizes and a compact summary.

use std::time::Duration;

use crate::Case;

const MIB: f64 = 1024.0 * 1024.0;

/// One run of one case.
pub struct Sample {
    pub wall: Duration,
    /// Bytes the case stored (file, repository, artifact), when it stores anything.
    pub output: Option<u64>,
    pub peak_rss: Option<u64>,
    /// What our child processes said about the run.
    pub notes: Vec<String>,
    /// CPU time the machine was busy during the run (every process, the server's too).
    pub cpu: Option<Duration>,
}

/// Every run of one case at one size, reduced.
pub struct CaseStats {
    pub case: Case,
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
    pub output: Option<u64>,
    pub peak_rss: Option<u64>,
    /// Median CPU time the machine was busy during a run.
    pub cpu: Option<Duration>,
    /// Those of the last run.
    pub notes: Vec<String>,
}

impl CaseStats {
    pub fn new(case: Case, samples: Vec<Sample>) -> CaseStats {
        let walls: Vec<u64> = samples.iter().map(|s| s.wall.as_nanos() as u64).collect();
        let peaks: Vec<u64> = samples.iter().filter_map(|s| s.peak_rss).collect();
        let outputs: Vec<u64> = samples.iter().filter_map(|s| s.output).collect();
        let cpus: Vec<u64> = samples
            .iter()
            .filter_map(|s| s.cpu.map(|c| c.as_nanos() as u64))
            .collect();
        CaseStats {
            case,
            median: Duration::from_nanos(median(&walls).expect("at least one run")),
            min: Duration::from_nanos(*walls.iter().min().unwrap_or(&0)),
            max: Duration::from_nanos(*walls.iter().max().unwrap_or(&0)),
            output: median(&outputs),
            peak_rss: median(&peaks),
            cpu: median(&cpus).map(Duration::from_nanos),
            notes: samples
                .into_iter()
                .last()
                .map(|s| s.notes)
                .unwrap_or_default(),
        }
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &[u64]) -> Option<u64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(v[n / 2 - 1] / 2 + v[n / 2] / 2),
    }
}

/// Everything measured at one database size.
pub struct SizeResult {
    pub mb: u64,
    /// Bytes of `pg_dump -Fc -Z0`, the unit of every throughput.
    pub raw_bytes: u64,
    pub cases: Vec<CaseStats>,
}

impl SizeResult {
    fn get(&self, case: Case) -> Option<&CaseStats> {
        self.cases.iter().find(|c| c.case == case)
    }

    fn wall_ratio(&self, a: Case, b: Case) -> Option<f64> {
        Some(self.get(a)?.median.as_secs_f64() / self.get(b)?.median.as_secs_f64())
    }

    /// The least `a / b` of wall times that `a`'s CPU allows: its machine-wide CPU time
    /// spread over every core at once, against `b`'s wall time.
    fn cpu_floor(&self, a: Case, b: Case) -> Option<f64> {
        let cores = std::thread::available_parallelism().ok()?.get() as f64;
        let cpu = self.get(a)?.cpu?.as_secs_f64();
        Some(cpu / cores / self.get(b)?.median.as_secs_f64())
    }

    fn output_ratio(&self, a: Case, b: Case) -> Option<f64> {
        Some(self.get(a)?.output? as f64 / self.get(b)?.output? as f64)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn opt_mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), |b| format!("{:.1}", mib(b)))
}

pub fn print_table(r: &SizeResult, repeat: usize) {
    println!();
    println!(
        "== {} MiB database (raw dump {:.1} MiB); median of {repeat} interleaved run(s) ==",
        r.mb,
        mib(r.raw_bytes)
    );
    println!(
        "{:<44} {:>10} {:>15} {:>12} {:>8} {:>14} {:>8}",
        "case", "median (s)", "min-max (s)", "output (MiB)", "MiB/s", "peak RSS (MiB)", "CPU (s)"
    );
    for c in &r.cases {
        let range = format!("{:.2}-{:.2}", c.min.as_secs_f64(), c.max.as_secs_f64());
        println!(
            "{:<44} {:>10.2} {:>15} {:>12} {:>8.1} {:>14} {:>8}",
            c.case.label(),
            c.median.as_secs_f64(),
            range,
            opt_mib(c.output),
            mib(r.raw_bytes) / c.median.as_secs_f64(),
            opt_mib(c.peak_rss),
            c.cpu
                .map_or_else(|| "-".into(), |d| format!("{:.2}", d.as_secs_f64())),
        );
    }
    for c in r.cases.iter().filter(|c| !c.notes.is_empty()) {
        println!("last run of {}:", c.case.label());
        for line in &c.notes {
            println!("  {line}");
        }
    }
}

/// What a ratio must be.
#[derive(Clone, Copy)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
    Below(f64),
    /// Shown for information.
    None,
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::AtMost(t) => format!("<= {t:.2}"),
            Target::AtLeast(t) => format!(">= {t:.2}"),
            Target::Below(t) => format!("< {t}"),
            Target::None => "info".into(),
        }
    }

    fn verdict(self, v: f64) -> &'static str {
        let met = match self {
            Target::AtMost(t) => v <= t,
            Target::AtLeast(t) => v >= t,
            Target::Below(t) => v < t,
            Target::None => return "",
        };
        if met {
            "ok"
        } else {
            "MISSED"
        }
    }
}

/// One ratio against its target; `value` is `None` when a case it needs did not run.
pub struct Check {
    name: &'static str,
    /// Its name in the summary line.
    short: &'static str,
    value: Option<f64>,
    unit: &'static str,
    target: Target,
}

impl Check {
    fn new(name: &'static str, short: &'static str, value: Option<f64>, target: Target) -> Self {
        Check {
            name,
            short,
            value,
            unit: "",
            target,
        }
    }

    fn print(&self) {
        let (value, verdict) = match self.value {
            Some(v) => (format!("{v:.2}{}", self.unit), self.target.verdict(v)),
            None => ("n/a".into(), "(not run)"),
        };
        let target = format!("{}{}", self.target.describe(), self.unit);
        println!("  {:<52} {value:>10}  {target:>12}  {verdict}", self.name);
    }

    /// `short value verdict`, or nothing when it was not measured.
    fn compact(&self) -> Option<String> {
        let v = self.value?;
        let verdict = self.target.verdict(v);
        Some(
            format!("{} {v:.2}{} {verdict}", self.short, self.unit)
                .trim_end()
                .to_string(),
        )
    }
}

/// The ratios of issue #13 at one size.
pub fn checks(r: &SizeResult) -> Vec<Check> {
    use Case::*;
    let rss = r.get(OursLocal).and_then(|c| c.peak_rss).map(mib);
    vec![
        Check::new(
            "ours local / ceiling (wall)",
            "ceiling",
            r.wall_ratio(OursLocal, Ceiling),
            Target::AtMost(1.10),
        ),
        Check::new(
            "ours local CPU / cores / ceiling wall (its floor)",
            "cpu-floor",
            r.cpu_floor(OursLocal, Ceiling),
            Target::None,
        ),
        Check::new(
            "-Z9 / ours local (speed-up)",
            "z9-speedup",
            r.wall_ratio(Z9, OursLocal),
            Target::AtLeast(4.0),
        ),
        Check::new(
            "ours stored size / -Z9 size",
            "z9-size",
            r.output_ratio(OursLocal, Z9),
            Target::AtMost(0.95),
        ),
        Check::new(
            "ours local / shell (wall)",
            "shell",
            r.wall_ratio(OursLocal, Shell),
            Target::None,
        ),
        Check::new(
            "ours local / shell + verify (wall)",
            "shell+verify",
            r.wall_ratio(OursLocal, ShellVerify),
            Target::None,
        ),
        Check::new(
            "restic / ours local (wall)",
            "restic",
            r.wall_ratio(Restic, OursLocal),
            Target::AtLeast(1.5),
        ),
        Check::new(
            "ours S3 / ours local (wall)",
            "s3",
            r.wall_ratio(OursS3, OursLocal),
            Target::AtMost(1.20),
        ),
        Check::new(
            "ours restore 1 job / pg_restore 1 job",
            "restore",
            r.wall_ratio(OursRestore, PgRestore),
            Target::AtMost(1.05),
        ),
        Check::new(
            "ours restore 2 jobs / pg_restore 1 job",
            "restore-j2",
            r.wall_ratio(OursRestoreJobs2, PgRestore),
            Target::AtMost(0.90),
        ),
        Check::new(
            "ours restore 2 jobs / pg_restore -j2",
            "restore-j2/pg-j2",
            r.wall_ratio(OursRestoreJobs2, PgRestoreJobs2),
            Target::None,
        ),
        Check {
            unit: " MiB",
            ..Check::new(
                "peak RSS of ours local (backup)",
                "rss",
                rss,
                Target::Below(64.0),
            )
        },
    ]
}

pub fn print_checks(checks: &[Check]) {
    println!("ratios (value, target, verdict):");
    for c in checks {
        c.print();
    }
}

/// Memory must not grow with the database: our backup's peak RSS at the largest size over
/// that at the smallest. `None` with fewer than two sizes.
pub fn flatness(results: &[SizeResult]) -> Option<Check> {
    let rss_at = |r: &SizeResult| r.get(Case::OursLocal)?.peak_rss;
    let smallest = results.iter().min_by_key(|r| r.mb)?;
    let largest = results.iter().max_by_key(|r| r.mb)?;
    if smallest.mb == largest.mb {
        return None;
    }
    let ratio = rss_at(largest)? as f64 / rss_at(smallest)?.max(1) as f64;
    Some(Check::new(
        "peak RSS of ours, largest size / smallest",
        "rss-flatness",
        Some(ratio),
        Target::AtMost(1.10),
    ))
}

pub fn print_flatness(results: &[SizeResult], flatness: &Option<Check>) {
    println!();
    let by_size: Vec<String> = results
        .iter()
        .map(|r| {
            let rss = r.get(Case::OursLocal).and_then(|c| c.peak_rss);
            format!("{} MiB: {} MiB", r.mb, opt_mib(rss))
        })
        .collect();
    println!("peak RSS of ours local by size: {}", by_size.join(", "));
    match flatness {
        Some(check) => check.print(),
        None => println!("  flatness needs two sizes"),
    }
}

/// One line per size with every measured ratio, for a closing note.
pub fn print_summary(results: &[SizeResult], flatness: &Option<Check>) {
    println!();
    println!("summary:");
    for r in results {
        let parts: Vec<String> = checks(r).iter().filter_map(Check::compact).collect();
        println!(
            "  {} MiB (raw {:.0} MiB): {}",
            r.mb,
            mib(r.raw_bytes),
            parts.join(", ")
        );
    }
    if let Some(line) = flatness.as_ref().and_then(Check::compact) {
        println!("  across sizes: {line}");
    }
}

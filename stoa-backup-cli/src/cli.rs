//! The command line: global options and commands (clap).

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::duration::HumanDuration;

/// The image `manifests` names unless told otherwise (the `deploy/Dockerfile` build).
pub const DEFAULT_IMAGE: &str = "ghcr.io/stoa-platform/stoa-backup:0.1.0";

/// Exit statuses, shown at the end of `--help` (and in the README).
pub const EXIT_CODES: &str = "\
Exit status:
  0    success
  1    failed (nothing of what was asked succeeded, or a storage target could not be read)
  2    usage or configuration error (the message names the file, line and key)
  3    partially failed (some components failed, the others succeeded)
  4    verification failed (a stored backup did not pass its checks; `verify`, and `drill`
       when a check of the restored data fails)
  130  interrupted by SIGINT (the run in progress is discarded: no manifest is written)
  143  interrupted by SIGTERM (likewise)";

/// Back up, list and check the backups of a STOA platform from one configuration file.
///
/// The configuration is --config PATH, else $STOA_BACKUP_CONFIG, else ./stoa-backup.yaml
/// when present, else the embedded default: the local PostgreSQL (DATABASE_URL, default
/// postgres://postgres@127.0.0.1:5432/postgres) into ./stoa-backups, zstd, verified, kept
/// 30 days. Logs go to stderr; results to stdout, as one JSON document with --json.
#[derive(Debug, Parser)]
#[command(name = "stoa-backup", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "STOA_BACKUP_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print one JSON document on stdout, with a `verdict`.
    #[arg(long, global = true)]
    pub json: bool,

    /// Log filter for stderr: error, warn, info, debug, trace, or target=level pairs
    /// separated by commas [default: $RUST_LOG, else warn].
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up components (every component when none is named), copy each complete, verified
    /// run to the component's `replicate_to` targets, apply each storage target's retention,
    /// and print the catalog (exit 3 when a copy failed: the backup itself is stored).
    Backup {
        /// Components to back up, by name.
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
    },
    /// List the complete runs (backups) of the storage targets, newest first.
    #[command(visible_alias = "snapshots")]
    List {
        /// Only runs holding this component (and only its storage target and its
        /// `replicate_to` targets).
        #[arg(long, value_name = "NAME")]
        component: Option<String>,
        /// Only runs carrying this label (repeatable: all must match).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Only this storage target (`--target` too: a replica's runs, say).
        #[arg(long, visible_alias = "target", value_name = "TARGET")]
        storage: Option<String>,
    },
    /// Copy every complete, verified run of one storage target that another lacks (the job
    /// of a second region): stored bytes unchanged, checked, manifest last; runs already
    /// there are left alone (exit 3 when some copies failed).
    Replicate {
        /// The target to bring up to date.
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// The target to copy from [default: the component's target, or the other of two].
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// Only runs holding this component.
        #[arg(long, value_name = "NAME")]
        component: Option<String>,
        /// Only runs started within this long (e.g. 30d): keep it within what the target's
        /// retention keeps, or each pass copies again what it pruned.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// At most this many runs written per pass, the newest first.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Verify stored runs again through the providers' verifiers and record the result
    /// beside each run (exit 4 when one fails).
    Verify {
        /// Runs to verify, by id [default: every complete run of the selected targets].
        #[arg(value_name = "RUN", conflicts_with = "latest")]
        runs: Vec<String>,
        /// Only the newest complete run of each component.
        #[arg(long)]
        latest: bool,
        /// Only runs holding this component (and only its storage target).
        #[arg(long, value_name = "NAME")]
        component: Option<String>,
        /// Only this storage target.
        #[arg(long, value_name = "TARGET")]
        storage: Option<String>,
        /// Skip runs verified more recently than this (e.g. 7d): incremental
        /// re-verification.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        max_age: Option<HumanDuration>,
    },
    /// Apply the retention rules: print the plan (what is kept and why, what would be
    /// deleted) by default, delete with --apply.
    Prune {
        /// Delete the runs the plan forgets.
        #[arg(long)]
        apply: bool,
        /// Only this storage target.
        #[arg(long, value_name = "TARGET")]
        storage: Option<String>,
    },
    /// Restore one component from a run: print the plan by default, restore with --apply.
    ///
    /// The run is looked for in the component's storage target and in its `replicate_to`
    /// targets: the newest complete, verified run across them (or the one named, wherever it
    /// is). A target that cannot be read (a region that is down) is passed over and named;
    /// the output says which target the run comes from.
    Restore {
        /// The component, by name.
        #[arg(value_name = "COMPONENT")]
        component: String,
        /// The run [default: the newest complete, verified run holding the component].
        #[arg(long, value_name = "ID", conflicts_with = "at")]
        run: Option<String>,
        /// The newest complete, verified run at or before this time (RFC 3339, or a date).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
        /// Read the run from this storage target only [default: the component's target,
        /// then its replicas].
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// Where to restore, by component type: postgres a database name (created; it must
        /// not exist), keycloak a realm name, helm a directory for the values files. Without
        /// it, the configured server itself.
        #[arg(long, value_name = "TARGET")]
        to: Option<String>,
        /// What to do with data that already exists at the target.
        #[arg(long, value_enum, default_value_t = Existing::Fail)]
        existing: Existing,
        /// Restore (without it, only the plan is printed and nothing is written).
        #[arg(long)]
        apply: bool,
    },
    /// Recover the whole platform from its backups in STOA's order (PostgreSQL, Vault /
    /// Infisical, Keycloak, CRDs, Helm values, Grafana), then run the checklist: print the
    /// plan by default, recover with --apply.
    ///
    /// Each component is restored into its configured server (an existing PostgreSQL
    /// database is a conflict unless --existing overwrite swaps the restored copy in); the
    /// checklist compares the row counts of each restored PostgreSQL database with its
    /// backup. One recovery reads one storage target and its replicas (the `replicate_to`
    /// targets of its components: the newest complete, verified run of each component across
    /// them; a target that cannot be read is passed over, and the journal is kept in the first
    /// that takes it): the components are recovered target by target, the targets in the
    /// STOA order of their components, and every target is planned before anything is
    /// written. When the targets interleave in that order
    /// (postgres in S3, Keycloak in Git, Grafana in S3 again) the command refuses and names
    /// the `recover <COMPONENT…>` commands to run one after another. A failed step is named
    /// with the steps done and the recovery id to resume with.
    Recover {
        /// Components to recover, by name [default: every configured component].
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
        /// Recover to the newest complete, verified runs at or before this time (RFC 3339,
        /// or a date).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
        /// Read every component's run from this storage target only (one recovery, which keeps
        /// its journal there) [default: each component's target, then its replicas].
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// What to do with data that already exists at the targets.
        #[arg(long, value_enum, default_value_t = Existing::Fail)]
        existing: Existing,
        /// Recover (without it, only the plan is printed and nothing is written).
        #[arg(long)]
        apply: bool,
        /// Resume an interrupted recovery from its journal: the newest unfinished one, or
        /// the one named (the steps done are not repeated; it applies, and then recovers the
        /// storage targets after it).
        #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "")]
        resume: Option<String>,
    },
    /// A recovery drill: restore the newest backups into scratch places (a scratch
    /// database, a scratch realm, a scratch directory), run the checks, remove the scratch
    /// places, and report the time each step took (exit 4 when a check fails).
    ///
    /// PostgreSQL is restored into a new scratch database and its row counts compared with
    /// the backup, Keycloak (the component named `keycloak`) into a scratch realm, Helm
    /// values into a scratch directory; other types restore into their live servers only and
    /// are not drilled.
    Drill {
        /// Components to drill, by name [default: every component that can be drilled].
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
    },
    /// Preflight: reach every storage target and component, and report each component's
    /// RPO status (the age of its newest verified backup against its target).
    ///
    /// Nothing is written: every storage target is listed, every component's source runs
    /// its preflight, and each component's newest complete, verified backup is judged by its
    /// `rpo`: ok, late (older than the RPO), never (no verified backup), or no_rpo. Exit 1
    /// when a storage target cannot be listed; otherwise a component is ok when its
    /// preflight passed and its state is ok or no_rpo, and the exit status is 0 when every
    /// component is ok, 1 when none is, 3 when some are.
    Check {
        /// Only these components, by name.
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
    },
    /// Print the Kubernetes manifests generated from the configuration: a CronJob per
    /// scheduled component, the ConfigMap holding the configuration, a ServiceAccount with
    /// the least RBAC the components need, and Secret references for the credentials.
    Manifests {
        /// The namespace the manifests are for.
        #[arg(long, value_name = "NAME", default_value = "stoa-system")]
        namespace: String,
        /// The container image.
        #[arg(long, value_name = "IMAGE", default_value = DEFAULT_IMAGE)]
        image: String,
    },
    /// Run the scheduler: every component with a `schedule` on its cron ticks, every
    /// `on_change` one when its change probe reports a change; serve /metrics and /healthz.
    ///
    /// Each run is the pipeline `backup` runs, under the run lock of its component in its
    /// storage target (a second replica's run is refused, naming the holder), copied to the
    /// component's `replicate_to` targets. A component
    /// whose newest missed tick is at most 6 h old (or that was never backed up) runs once
    /// at start; a tick that comes while its run goes on is skipped. SIGINT / SIGTERM stop
    /// it: no new run starts, running ones are cancelled (no manifest) and waited for up to
    /// --shutdown-grace, then it exits 130 / 143.
    Serve {
        /// Where /metrics and /healthz listen (port 0: any free port, printed at start).
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9898")]
        listen: String,
        /// How often the change probes of `on_change` components are asked.
        #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
        poll_interval: HumanDuration,
        /// How long a change must stay unchanged before its backup starts.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        debounce: HumanDuration,
        /// How often the RPO gauges and the replication lag are read from the catalogs.
        #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
        rpo_refresh: HumanDuration,
        /// How long running backups are waited for after a signal.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        shutdown_grace: HumanDuration,
    },
    /// Check the configuration, or print an example.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `config` commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration without connecting to anything, and print its storage
    /// targets, components and schedules (secrets as ***).
    Check,
    /// Print a commented example configuration (the guide's tables).
    Example,
}

/// `--existing`: what a restore does with data already at its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Existing {
    /// Refuse to touch existing data: the plan shows conflicts and apply refuses.
    Fail,
    /// Leave existing objects alone and restore only the missing ones.
    Skip,
    /// Replace existing data.
    Overwrite,
}

fn parse_duration(s: &str) -> Result<HumanDuration, String> {
    HumanDuration::parse(s).map_err(|e| e.to_string())
}

/// RFC 3339 (`2026-11-30T02:00:00Z`), or a date (`2026-11-30`: the end of that day, UTC).
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Ok(d
            .and_hms_opt(23, 59, 59)
            .expect("a valid time of day")
            .and_utc()),
        Err(_) => Err(format!(
            "{s:?} is neither an RFC 3339 time (2026-11-30T02:00:00Z) nor a date (2026-11-30)"
        )),
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn labels_are_key_value_pairs() {
        assert_eq!(
            parse_label("job=nightly"),
            Ok(("job".into(), "nightly".into()))
        );
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("nope").is_err());
        assert!(parse_label("=x").is_err());
    }
}

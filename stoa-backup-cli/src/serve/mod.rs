//! `serve`: the library's scheduler running every scheduled and on-change component, with
//! `GET /metrics` and `GET /healthz`. A component with a `schedule` runs on its cron ticks
//! (one catch-up at start when its newest missed tick is recent enough), an `on_change` one
//! whenever its provider's change probe (Helm release Secrets, custom resources, Grafana
//! versions) reports a change; manual components never run here. Each run is the same
//! pipeline `backup` runs, under the run lock of its component in its storage target, copied
//! to the component's `replicate_to` targets, and feeds the metrics; the RPO gauges and the
//! replication lag of each component and replica target are read from the catalogs every
//! `--rpo-refresh`.
//! SIGINT / SIGTERM stop it: no new run starts, running ones are cancelled (no manifest)
//! and waited for, then it exits 130 / 143.

mod http;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use stoa_backup::core::metrics::BackupMetrics;
use stoa_backup::core::replicate::Replicator;
use stoa_backup::core::schedule::{
    Job, JobContext, JobOutput, OnChange, Scheduler, SchedulerEvent, Trigger,
};
use stoa_backup::core::{
    AgeEncryption, Catalog, Error, Keyring, Observer, ObserverSet, RunFilter, Sink, TracingObserver,
};
use stoa_backup::signals;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;
use crate::commands::pipelines::{component_pipeline, Shared};
use crate::commands::{failed, interrupted, keys, load_config, sinks, usage_error};
use crate::config::model::{Component, Config, Trigger as ConfigTrigger};
use crate::outcome::Outcome;
use crate::sources;

/// What `serve` was asked.
pub struct Request<'a> {
    /// `--listen`.
    pub listen: &'a str,
    /// `--poll-interval`.
    pub poll: Duration,
    /// `--debounce`.
    pub debounce: Duration,
    /// `--rpo-refresh`.
    pub rpo_refresh: Duration,
    /// `--shutdown-grace`.
    pub grace: Duration,
}

/// What every job's run shares.
struct State {
    config: Config,
    encryption: Option<AgeEncryption>,
    keyring: Keyring,
    sinks: BTreeMap<String, Arc<dyn Sink>>,
    metrics: BackupMetrics,
}

impl State {
    /// Runs one backup of component `name` as `backup <name>` does.
    async fn run(
        self: Arc<Self>,
        name: String,
        ctx: JobContext,
    ) -> stoa_backup::core::Result<JobOutput> {
        let c = self
            .config
            .component(&name)
            .expect("jobs are made of configured components");
        let sink = self.sinks[&c.storage].clone();
        let replicas: Vec<(String, Arc<dyn Sink>)> = c
            .replicate_to
            .iter()
            .map(|t| (t.clone(), self.sinks[t].clone()))
            .collect();
        let observer: Arc<dyn Observer> = Arc::new(
            ObserverSet::new()
                .with(TracingObserver)
                .with(self.metrics.observer()),
        );
        let shared = Shared {
            config: &self.config,
            encryption: self.encryption.as_ref(),
            keyring: &self.keyring,
        };
        tracing::info!(component = %name, reason = %ctx.reason, "backing up");
        let pipeline =
            component_pipeline(&shared, c, sink, &replicas, ctx.cancel.clone(), observer)
                .await
                .map_err(|e| Error::config(e).with_component(name.clone()))?;
        JobOutput::from_report(pipeline.run().await?)
    }
}

/// The scheduler's trigger for a component, or `None` for a manual one.
async fn trigger(c: &Component, req: &Request<'_>) -> Result<Option<Trigger>, String> {
    Ok(match &c.trigger {
        ConfigTrigger::Manual => None,
        ConfigTrigger::Schedule(s) => Some(
            Trigger::cron_in(s.expression(), s.time_zone().name())
                .map_err(|e| format!("component {}: {e}", c.name))?,
        ),
        ConfigTrigger::OnChange => {
            let probe = sources::change_probe(c).await.map_err(|e| e.to_string())?;
            Some(Trigger::on_change(
                OnChange::shared(probe)
                    .poll_every(req.poll)
                    .debounce(req.debounce),
            ))
        }
    })
}

/// Runs the scheduler until a signal.
pub async fn run(cli: &Cli, req: Request<'_>) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let addr: SocketAddr = match req.listen.parse() {
        Ok(a) => a,
        Err(e) => return usage_error(cli, &format!("--listen {:?}: {e}", req.listen)),
    };
    let shutdown = match signals::listen() {
        Ok(s) => s,
        Err(e) => return failed(cli, &e.to_string()),
    };
    let (encryption, keyring) = match (keys::encryption(&config), keys::keyring(&config)) {
        (Ok(e), Ok(k)) => (e, k),
        (Err(e), _) | (_, Err(e)) => return failed(cli, &e),
    };

    // The triggers first: a configuration serve cannot run is refused before anything starts.
    let mut triggers = Vec::new();
    for c in &config.components {
        match trigger(c, &req).await {
            Ok(Some(t)) => triggers.push((c.name.clone(), c.storage.clone(), t)),
            Ok(None) => tracing::info!(component = %c.name, "manual: not scheduled"),
            Err(e) => return usage_error(cli, &e),
        }
    }
    if triggers.is_empty() {
        return usage_error(
            cli,
            &format!(
                "no component of {} has a `schedule` or `on_change`: nothing to serve",
                config.file
            ),
        );
    }
    // Every target a scheduled component writes to: its own and its replicas.
    let mut sinks_by_name = BTreeMap::new();
    for (name, _, _) in &triggers {
        let c = config
            .component(name)
            .expect("triggers are made of components");
        for storage in c.targets() {
            if sinks_by_name.contains_key(storage) {
                continue;
            }
            let target = config.target(storage).expect("checked when loading");
            match sinks::open(target).await {
                Ok(s) => {
                    sinks_by_name.insert(storage.to_string(), s);
                }
                Err(e) => return failed(cli, &format!("storage target {storage}: {e}")),
            }
        }
    }
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => return failed(cli, &format!("cannot listen on {addr}: {e}")),
    };
    let bound = listener.local_addr().unwrap_or(addr);

    let metrics = BackupMetrics::new();
    let rpo_targets: Vec<(String, String, Duration)> = config
        .components
        .iter()
        .filter_map(|c| {
            c.rpo
                .as_ref()
                .map(|r| (c.name.clone(), c.storage.clone(), r.duration()))
        })
        .collect();
    for (component, _, target) in &rpo_targets {
        metrics.set_rpo_target(component, *target);
    }
    let state = Arc::new(State {
        config,
        encryption,
        keyring,
        sinks: sinks_by_name,
        metrics: metrics.clone(),
    });

    let mut jobs = Vec::new();
    for (name, storage, trigger) in triggers {
        // A job knows its last run (the newest complete run in the catalog) so that a tick
        // missed while nothing served is caught up once; a component never backed up counts
        // as having missed everything.
        let last = last_run(&state.sinks[&storage], &name).await;
        let job_state = state.clone();
        let job_name = name.clone();
        jobs.push(
            Job::new(name, trigger, move |ctx: JobContext| {
                job_state.clone().run(job_name.clone(), ctx)
            })
            .last_run(last.unwrap_or(DateTime::<Utc>::UNIX_EPOCH)),
        );
    }
    let scheduler = match Scheduler::builder()
        .jobs(jobs)
        .observer(log_event)
        .shutdown_grace(req.grace)
        .build()
    {
        Ok(s) => s,
        Err(e) => return usage_error(cli, &e.to_string()),
    };
    let stats = scheduler.stats();
    let stopping = Arc::new(AtomicBool::new(false));

    let http_cancel = CancellationToken::new();
    let endpoints = http::Endpoints {
        metrics: {
            let m = metrics.clone();
            Arc::new(move || m.encode_text())
        },
        health: {
            let stopping = stopping.clone();
            Arc::new(move || {
                let stopping = stopping.load(Ordering::SeqCst);
                http::Health {
                    ok: !stopping,
                    body: json!({
                        "status": if stopping { "stopping" } else { "serving" },
                        "jobs": stats.snapshot(),
                    })
                    .to_string(),
                }
            })
        },
    };
    let http_task = tokio::spawn(http::serve(listener, endpoints, http_cancel.clone()));
    let lags = lag_pairs(&state);
    let rpo_task = tokio::spawn(refresh_gauges(
        state.clone(),
        rpo_targets,
        lags,
        req.rpo_refresh,
        http_cancel.clone(),
    ));
    // Where the endpoints are, on stdout: a port of 0 picks a free one.
    println!("serving /metrics and /healthz on http://{bound}");
    tracing::info!(%bound, jobs = state.config.components.len(), "serving");

    let report = scheduler.run(shutdown.token()).await;
    stopping.store(true, Ordering::SeqCst);
    http_cancel.cancel();
    let _ = tokio::join!(http_task, rpo_task);
    if !report.abandoned.is_empty() {
        tracing::warn!(abandoned = ?report.abandoned, "runs aborted at the shutdown deadline");
    }
    match shutdown.signal() {
        Some(signal) => interrupted(
            cli,
            signal,
            &format!(
                "the scheduler stopped{}",
                if report.is_clean() {
                    "; every run in progress was cancelled and nothing of it was kept"
                } else {
                    "; some runs were aborted at the shutdown deadline"
                }
            ),
        ),
        // The scheduler only returns when cancelled.
        None => failed(cli, "the scheduler stopped without a signal"),
    }
}

/// When component `name` last ran into `sink`: its newest complete run, if the catalog
/// can be read.
async fn last_run(sink: &Arc<dyn Sink>, name: &str) -> Option<DateTime<Utc>> {
    match Catalog::new(sink.clone())
        .list_runs(&RunFilter::component(name))
        .await
    {
        Ok(runs) => runs.first().map(|r| r.started_at),
        Err(e) => {
            tracing::warn!(component = name, error = %e, "cannot read the catalog: no catch-up");
            None
        }
    }
}

/// The (storage target, replica target) pairs whose lag the metrics show, each with the
/// components replicated between them: the components with `replicate_to` whose targets
/// are open here (those of the scheduled components).
fn lag_pairs(state: &State) -> Vec<(String, String, Vec<String>)> {
    let mut pairs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for c in &state.config.components {
        if !c.targets().all(|t| state.sinks.contains_key(t)) {
            continue;
        }
        for replica in &c.replicate_to {
            pairs
                .entry((c.storage.clone(), replica.clone()))
                .or_default()
                .push(c.name.clone());
        }
    }
    pairs
        .into_iter()
        .map(|((from, to), components)| (from, to, components))
        .collect()
}

/// Reads, now and then every `every`, the RPO status of every component with an `rpo` from
/// its catalog, and the replication lag of each component behind its storage target in each
/// of its replica targets (`lags`: storage, replica, components), into the metrics.
async fn refresh_gauges(
    state: Arc<State>,
    targets: Vec<(String, String, Duration)>,
    lags: Vec<(String, String, Vec<String>)>,
    every: Duration,
    cancel: CancellationToken,
) {
    if targets.is_empty() && lags.is_empty() {
        return;
    }
    loop {
        refresh_rpo(&state, &targets).await;
        for (storage, replica, components) in &lags {
            let (Some(from), Some(to)) = (state.sinks.get(storage), state.sinks.get(replica))
            else {
                continue;
            };
            // Reads only: no lock.
            let replicator =
                Replicator::new(&Catalog::new(from.clone()), &Catalog::new(to.clone()))
                    .named(replica.clone())
                    .without_lock();
            if let Err(e) = state
                .metrics
                .update_replication_lag(&replicator, components, Utc::now())
                .await
            {
                tracing::warn!(storage, replica, error = %e, "cannot read the catalogs for the replication lag");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Reads the RPO status of every component with an `rpo` from its catalog into the metrics.
async fn refresh_rpo(state: &State, targets: &[(String, String, Duration)]) {
    let mut by_target: BTreeMap<&str, Vec<(&str, Duration)>> = BTreeMap::new();
    for (component, storage, rpo) in targets {
        by_target
            .entry(storage.as_str())
            .or_default()
            .push((component.as_str(), *rpo));
    }
    for (storage, components) in by_target {
        let Some(sink) = state.sinks.get(storage) else {
            continue;
        };
        let catalog = Catalog::new(sink.clone());
        if let Err(e) = state
            .metrics
            .update_rpo(&catalog, components, Utc::now())
            .await
        {
            tracing::warn!(storage, error = %e, "cannot read the catalog for the RPO status");
        }
    }
}

/// The scheduler's events in the log.
fn log_event(event: &SchedulerEvent) {
    match event {
        SchedulerEvent::Finished {
            job,
            outcome: Err(e),
            ..
        } => tracing::error!(component = %job, error = %e, "backup failed"),
        SchedulerEvent::Finished {
            job,
            outcome: Ok(out),
            ..
        } => tracing::info!(component = %job, "{}", out.summary),
        SchedulerEvent::ProbeFailed {
            job, probe, error, ..
        } => {
            tracing::warn!(component = %job, probe = %probe, error = %error, "change probe failed")
        }
        other => tracing::info!(event = ?other, "scheduler"),
    }
}

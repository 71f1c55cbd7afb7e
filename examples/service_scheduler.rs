//! A small service that owns its backups: PostgreSQL daily at 02:00 UTC (kept 30 days),
//! Grafana on every change (polled each minute), both into a local directory under the
//! run lock, with `/metrics` (Prometheus) and `/healthz` on port 9898; Ctrl-C (or SIGTERM)
//! stops it cleanly: no new run starts, a running one is cancelled (no manifest) and waited
//! for up to 30 s.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/stoa \
//! STOA_GRAFANA_URL=http://127.0.0.1:3000 STOA_GRAFANA_TOKEN=glsa_… \
//!     cargo run --example service_scheduler --features scheduler,metrics,grafana
//! curl -s localhost:9898/metrics | grep stoa_backup_
//! ```
//!
//! Without `STOA_GRAFANA_URL` only PostgreSQL is scheduled. A real service mounts
//! `metrics.encode_text()` on its own HTTP router; the few lines of HTTP below only keep the
//! example free of a web framework.

use std::sync::Arc;
use std::time::Duration;

use stoa_backup::core::metrics::BackupMetrics;
use stoa_backup::core::schedule::{Job, OnChange, Scheduler, SchedulerEvent, Trigger};
use stoa_backup::core::ObserverSet;
use stoa_backup::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let shutdown = stoa_backup::signals::listen()?;
    let sink: Arc<dyn Sink> = Arc::new(
        LocalSink::builder("./stoa-backups")
            .create_root(true)
            .build()?,
    );
    let metrics = BackupMetrics::new();
    metrics.set_rpo_target("postgres", Duration::from_secs(24 * 3600));
    let observer = || {
        ObserverSet::new()
            .with(TracingObserver)
            .with(metrics.observer())
    };

    let mut jobs = Vec::new();
    let (pg_sink, pg_observer) = (sink.clone(), observer());
    let conn = PgConnection::from_env()?;
    jobs.push(Job::pipeline(
        "postgres",
        Trigger::cron("0 2 * * *")?,
        move |ctx| {
            Pipeline::builder()
                .source(PostgresSource::builder(conn.clone()).build()?)
                .sink(pg_sink.clone())
                .compression(ZstdCodec::default())
                .verifier(PgArchiveVerifier::new())
                .retention(KeepRules::new().keep_within(chrono::Duration::days(30)))
                .apply_retention(true)
                .lock_in_sink()
                .observer(pg_observer.clone())
                .cancel(ctx.cancel.clone())
                .build()
        },
    ));
    if let Some(url) = env("STOA_GRAFANA_URL") {
        let token = env("STOA_GRAFANA_TOKEN")
            .ok_or_else(|| Error::config("STOA_GRAFANA_TOKEN is not set"))?;
        let source =
            GrafanaSource::builder(GrafanaConnection::new(&url, GrafanaAuth::Token(token))?)
                .build()?;
        let probe = source.change_probe();
        let (source, gf_sink, gf_observer) = (Arc::new(source), sink.clone(), observer());
        jobs.push(Job::pipeline(
            "grafana",
            Trigger::on_change(OnChange::new(probe).poll_every(Duration::from_secs(60))),
            move |ctx| {
                Pipeline::builder()
                    .source(source.clone())
                    .sink(gf_sink.clone())
                    .lock_in_sink()
                    .observer(gf_observer.clone())
                    .cancel(ctx.cancel.clone())
                    .build()
            },
        ));
    }
    let scheduler = Scheduler::builder()
        .jobs(jobs)
        .observer(|event: &SchedulerEvent| tracing::info!(?event, "scheduler"))
        .shutdown_grace(Duration::from_secs(30))
        .build()?;

    // /metrics and /healthz, until the scheduler stops.
    let listener = TcpListener::bind("0.0.0.0:9898")
        .await
        .map_err(|e| Error::config(format!("cannot listen on 0.0.0.0:9898: {e}")))?;
    let served = metrics.clone();
    let http = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 1024];
            let n = socket.read(&mut request).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..n]);
            let (status, body) = match request.split_whitespace().nth(1) {
                Some("/metrics") => ("200 OK", served.encode_text()),
                Some("/healthz") => ("200 OK", "ok\n".to_string()),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.0 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            // A scraper that hung up gets nothing more: there is no one to tell.
            if let Err(e) = socket.write_all(response.as_bytes()).await {
                tracing::debug!(error = %e, "a /metrics client went away");
            }
        }
    });

    let report = scheduler.run(shutdown.token()).await;
    http.abort();
    println!(
        "stopped{}; runs per job: {:?}",
        if report.is_clean() {
            " cleanly"
        } else {
            " (some runs were aborted)"
        },
        report.stats
    );
    shutdown.exit_if_received("the scheduler stopped");
    Ok(())
}

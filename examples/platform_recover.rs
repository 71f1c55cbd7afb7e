//! Recovers the STOA platform from `./stoa-backups` the way the guide's full-cluster
//! procedure does — PostgreSQL → Vault → Keycloak → CRDs and custom resources → Helm values
//! → Grafana → the checklist — planned first, applied only with `STOA_APPLY=1`.
//!
//! ```sh
//! cargo run --example quickstart                                   # a PostgreSQL backup
//! cargo run --example platform_recover --features full             # the plan: writes nothing
//! STOA_APPLY=1 cargo run --example platform_recover --features full
//! STOA_RESUME=<recovery id> cargo run --example platform_recover --features full
//! ```
//!
//! Components are recovered when the backup directory holds runs of them and their target
//! is configured:
//! - PostgreSQL into `TARGET_DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/stoa_restored`), restored beside any live database
//!   of that name and swapped in; the dump is that of `DATABASE` (default: the target's
//!   name);
//! - Vault KV with `VAULT_ADDR` / `VAULT_TOKEN`;
//! - Keycloak with `KEYCLOAK_URL` / `KEYCLOAK_CLIENT_ID` / `KEYCLOAK_CLIENT_SECRET`;
//! - CRDs, custom resources and Helm values with `STOA_KUBERNETES=1` (kubeconfig or
//!   in-cluster); the values file goes to `STOA_VALUES_DIR` (default `./restored-values`)
//!   and the `helm upgrade --install` command to run is printed;
//! - Grafana with `GRAFANA_URL` / `GRAFANA_TOKEN`.
//!
//! The checklist, for what is configured: pods in `stoa-system` Running and Ready (with
//! Kubernetes), `STOA_CONTROL_PLANE_HEALTH_URL` and `STOA_GATEWAY_HEALTH_URL` answering 2xx,
//! a client-credentials login (`STOA_OIDC_CLIENT_ID` / `STOA_OIDC_CLIENT_SECRET` in realm
//! `stoa`), the API catalog and subscriptions row counts against the backup's
//! (`STOA_CHECK_TABLES`, default `stoa.apis,stoa.subscriptions`), Prometheus scraping the
//! gateway (`STOA_PROMETHEUS_URL`, job `STOA_PROMETHEUS_JOB`, default `stoa-gateway`).
//! Without `STOA_APPLY`, the checklist runs on its own against the systems as they are.
//!
//! `STOA_AGE_IDENTITY` holds the age secret key of encrypted artifacts, `STOA_RPO_HOURS`
//! (default 24) and `STOA_RTO_MINUTES` (default 120) the objectives, `STOA_JSON=1` prints
//! JSON instead of tables. Exit codes: 0 recovered and every check passed, 1 a step or a
//! check failed (the recovery id to resume is printed), 130 / 143 interrupted.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use stoa_backup::core::recovery::{CheckContext, Checklist, Recovery, Verdict};
use stoa_backup::prelude::*;
use stoa_backup::providers::checks::{HttpHealth, OidcLogin, PodsReady, PrometheusUp, RowCounts};
use stoa_backup::providers::grafana::{GrafanaAuth, GrafanaConnection, GrafanaRestorer};
use stoa_backup::providers::keycloak::{KeycloakConnection, KeycloakRestorer};
use stoa_backup::providers::kubernetes::{CustomResourcesRestorer, HelmValuesRestorer};
use stoa_backup::providers::vault::{VaultConnection, VaultKvRestorer};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let shutdown = stoa_backup::signals::listen()?;
    let json = var("STOA_JSON").is_some();
    let dir = var("STOA_BACKUP_DIR").unwrap_or_else(|| "./stoa-backups".into());
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(&dir)?);
    let keyring = match var("STOA_AGE_IDENTITY") {
        Some(secret) => Keyring::new().with_identity(&secret)?,
        None => Keyring::default(),
    };
    let held = Catalog::new(sink.clone())
        .list_runs(&RunFilter::default())
        .await?;
    let backed_up = |component: &str| {
        held.iter()
            .any(|r| r.verified && r.components.iter().any(|c| c == component))
    };

    let target = PgConnection::from_url(
        &var("TARGET_DATABASE_URL")
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/stoa_restored".into()),
    )?;
    let database = target.get_dbname().to_string();
    let server = target.with_dbname("postgres");
    let mut recovery = Recovery::stoa()
        .sink(sink.clone())
        .keyring(keyring)
        .cancel(shutdown.token())
        .rpo(Duration::from_secs(
            var("STOA_RPO_HOURS")
                .and_then(|h| h.parse().ok())
                .unwrap_or(24)
                * 3600,
        ))
        .rto(Duration::from_secs(
            var("STOA_RTO_MINUTES")
                .and_then(|m| m.parse().ok())
                .unwrap_or(120)
                * 60,
        ));
    let mut checks = Checklist::new().timeout(Duration::from_secs(30));
    if backed_up("postgres") {
        let source_db = var("DATABASE").unwrap_or_else(|| database.clone());
        recovery = recovery.restore(
            PostgresRestorer::new(
                server.clone(),
                RestoreTarget::NewDatabase {
                    name: database.clone(),
                    swap: true,
                },
            )
            .from_database(&source_db),
        );
        let tables =
            var("STOA_CHECK_TABLES").unwrap_or_else(|| "stoa.apis,stoa.subscriptions".into());
        checks = checks.check(
            RowCounts::new(server.clone(), tables.split(',').map(str::trim))?
                .database(&database)
                .backed_up_as(&source_db)
                .named("API catalog and subscriptions"),
        );
    }
    if var("VAULT_ADDR").is_some() && backed_up("vault-kv") {
        recovery = recovery.restore(VaultKvRestorer::new(VaultConnection::from_env()?)?);
    }
    if var("KEYCLOAK_URL").is_some() && backed_up("keycloak") {
        recovery = recovery.restore(KeycloakRestorer::new(KeycloakConnection::from_env()?)?);
    }
    if let (Some(url), Some(id), Some(secret)) = (
        var("KEYCLOAK_URL"),
        var("STOA_OIDC_CLIENT_ID"),
        var("STOA_OIDC_CLIENT_SECRET"),
    ) {
        checks = checks.check(OidcLogin::new(&url, "stoa", &id, &secret)?);
    }
    if var("STOA_KUBERNETES").is_some() {
        let client = stoa_backup::providers::kubernetes::connect().await?;
        if backed_up("crds") {
            recovery = recovery.restore(CustomResourcesRestorer::builder(client.clone()).build()?);
        }
        if backed_up("helm") {
            let values = var("STOA_VALUES_DIR").unwrap_or_else(|| "./restored-values".into());
            recovery = recovery.restore(HelmValuesRestorer::new(values).print_command(false));
        }
        checks = checks.check(PodsReady::new(client));
    }
    if let (Some(url), Some(token)) = (var("GRAFANA_URL"), var("GRAFANA_TOKEN")) {
        if backed_up("grafana") {
            recovery = recovery.restore(GrafanaRestorer::new(GrafanaConnection::new(
                &url,
                GrafanaAuth::Token(token),
            )?)?);
        }
    }
    for (name, env) in [
        ("control plane /health", "STOA_CONTROL_PLANE_HEALTH_URL"),
        ("gateway /health", "STOA_GATEWAY_HEALTH_URL"),
    ] {
        if let Some(url) = var(env) {
            checks = checks.check(HttpHealth::new(name, &url)?);
        }
    }
    if let Some(url) = var("STOA_PROMETHEUS_URL") {
        let job = var("STOA_PROMETHEUS_JOB").unwrap_or_else(|| "stoa-gateway".into());
        checks = checks.check(PrometheusUp::new(&url, &job)?);
    }
    let apply = var("STOA_APPLY").is_some() || var("STOA_RESUME").is_some();
    if apply && !checks.is_empty() {
        recovery = recovery.checks(checks.clone());
    }
    let recovery = recovery.build()?;

    let plan = recovery.plan().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan.table());
        for key in &plan.keys {
            println!("key: {} — {}", key.name, key.detail);
        }
    }
    if !apply {
        if !json {
            println!("plan only: nothing was written (STOA_APPLY=1 applies it)");
        }
        if checks.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        let report = checks.run(&CheckContext::new(Vec::new())).await;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table());
        }
        return Ok(match report.verdict {
            Verdict::Passed => ExitCode::SUCCESS,
            Verdict::Failed => ExitCode::FAILURE,
        });
    }

    let outcome = match var("STOA_RESUME") {
        Some(id) => recovery.resume(&id).await,
        None => recovery.apply(&plan).await,
    };
    match outcome {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
                for step in &report.steps {
                    if let Some(cmd) = step.report.as_ref().and_then(|r| r.facts.get("command")) {
                        println!("next, run: {}", cmd.as_str().unwrap_or_default());
                    }
                }
            }
            Ok(match report.verdict {
                Verdict::Passed => ExitCode::SUCCESS,
                Verdict::Failed => ExitCode::FAILURE,
            })
        }
        Err(e) => {
            eprintln!("recovery stopped: {e}");
            if let Some(code) = shutdown.exit_code() {
                return Ok(code);
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

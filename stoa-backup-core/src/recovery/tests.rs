//! Recovery: order, plan without writes, journal, resume, checks, drills, keys — over real
//! pipeline runs in a memory sink and restorers that log what they are asked to do.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::error::{Error, ErrorKind};
use crate::pipeline::Pipeline;
use crate::restore::{KeyKind, KeyNeeded, RestoreContext};
use crate::sink::{MemorySink, Sink};
use crate::source::{ArtifactPlan, Export, ExportContext, PreflightReport, Source};

type Log = Arc<Mutex<Vec<String>>>;

/// Exports one fixed artifact for its component.
#[derive(Debug)]
struct OneArtifact(&'static str);

#[async_trait]
impl Source for OneArtifact {
    fn component(&self) -> &str {
        self.0
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
        Ok(Export::new(crate::stream::once(Bytes::from(format!(
            "{} state",
            self.0
        )))))
    }
}

/// Logs `plan:<c>` and `restore:<c>`; reads every artifact; fails its next `fail` real
/// restores; says a key is missing when told to.
#[derive(Debug)]
struct Logged {
    component: &'static str,
    log: Log,
    fail: AtomicU32,
    missing_key: bool,
}

fn logged(component: &'static str, log: &Log) -> Logged {
    Logged {
        component,
        log: log.clone(),
        fail: AtomicU32::new(0),
        missing_key: false,
    }
}

#[async_trait]
impl Restorer for Logged {
    fn component(&self) -> &str {
        self.component
    }
    async fn keys_needed(&self, _: &RestoreContext<'_>) -> Result<Vec<KeyNeeded>> {
        Ok(vec![KeyNeeded {
            kind: KeyKind::UnsealShares,
            name: format!("{} unseal shares", self.component),
            detail: "3 of 5".into(),
            held: Some(!self.missing_key),
        }])
    }
    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        let mut report = RestoreReport::for_context(ctx);
        for a in ctx.artifacts() {
            crate::stream::collect(ctx.open_plain(a).await?).await?;
            report.created += 1;
        }
        let what = if ctx.dry_run() { "plan" } else { "restore" };
        self.log
            .lock()
            .unwrap()
            .push(format!("{what}:{}", self.component));
        if !ctx.dry_run()
            && self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(Error::new(ErrorKind::Unavailable, "the target went away"));
        }
        Ok(report)
    }
}

/// A custom step that logs.
#[derive(Debug)]
struct Resync(Log);

#[async_trait]
impl CustomStep for Resync {
    async fn plan(&self, ctx: &StepContext<'_>) -> Result<RestoreReport> {
        assert!(ctx.dry_run());
        self.0.lock().unwrap().push("plan:resync".into());
        Ok(RestoreReport {
            updated: 1,
            ..RestoreReport::default()
        })
    }
    async fn apply(&self, ctx: &StepContext<'_>) -> Result<RestoreReport> {
        // It sees what ran before it.
        let before: Vec<&str> = ctx.earlier().iter().map(|s| s.name.as_str()).collect();
        self.0
            .lock()
            .unwrap()
            .push(format!("restore:resync after {}", before.join("+")));
        Ok(RestoreReport {
            updated: 1,
            ..RestoreReport::default()
        })
    }
}

/// Cleans up a scratch target, logging.
#[derive(Debug)]
struct Scratch(&'static str, Log);

#[async_trait]
impl CleanUp for Scratch {
    async fn clean_up(&self) -> Result<String> {
        self.1.lock().unwrap().push(format!("clean:{}", self.0));
        Ok(format!("dropped {}", self.0))
    }
}

/// Backs up each component in its own run, as scheduled in production.
async fn backed_up(sink: &Arc<MemorySink>, components: &[&'static str]) {
    for c in components {
        Pipeline::builder()
            .source(OneArtifact(c))
            .sink(sink.clone())
            .verifier(crate::verify::ChecksumVerifier::new())
            .build()
            .unwrap()
            .run()
            .await
            .unwrap()
            .into_result()
            .unwrap();
    }
}

fn passing(name: &'static str, log: &Log) -> FnCheck {
    let log = log.clone();
    FnCheck::new(name, move |_| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(format!("check:{name}"));
            Ok(CheckOutcome::passed("ok"))
        }
    })
}

fn writes(sink: &MemorySink) -> usize {
    futures::executor::block_on(sink.list(JOURNALS_PREFIX))
        .unwrap()
        .len()
}

#[tokio::test]
async fn stoa_order_plans_without_writing_then_applies_in_order() {
    let sink = Arc::new(MemorySink::new());
    backed_up(&sink, &["grafana", "keycloak", "postgres", "helm", "crds"]).await;
    let log = Log::default();
    let recovery = Recovery::stoa()
        .sink(sink.clone())
        .restore(logged("grafana", &log))
        .restore(logged("keycloak", &log))
        .restore(logged("helm", &log))
        .step(Step::custom("resync", Resync(log.clone())))
        .restore(logged("postgres", &log))
        .restore(logged("crds", &log))
        .checks(Checklist::new().check(passing("gateway", &log)))
        .rto(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert_eq!(
        recovery.step_names(),
        ["postgres", "keycloak", "crds", "helm", "resync", "grafana", "checks"]
    );

    let plan = recovery.plan().await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "plan:postgres",
            "plan:keycloak",
            "plan:crds",
            "plan:helm",
            "plan:resync",
            "plan:grafana"
        ]
    );
    assert_eq!(writes(&sink), 0, "a plan writes no journal");
    assert_eq!(plan.totals.created, 5);
    assert_eq!(plan.totals.updated, 1);
    assert_eq!(plan.steps[6].checks, ["gateway"]);
    assert!(plan.keys.iter().any(|k| k.name == "postgres unseal shares"));
    let table = plan.table();
    assert!(
        table.contains("postgres") && table.contains("1 checks"),
        "{table}"
    );
    for s in &plan.steps[..4] {
        assert!(s.run_id.is_some(), "{s:?}");
    }
    // Each component comes from its own run.
    assert_eq!(plan.point.runs.len(), 5);

    log.lock().unwrap().clear();
    let report = recovery.apply(&plan).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "restore:postgres",
            "restore:keycloak",
            "restore:crds",
            "restore:helm",
            "restore:resync after postgres+keycloak+crds+helm",
            "restore:grafana",
            "check:gateway"
        ]
    );
    assert_eq!(report.verdict, Verdict::Passed);
    assert_eq!(report.within_rto, Some(true));
    assert_eq!(report.steps.len(), 7);
    let journal = recovery.journal(&report.recovery_id).await.unwrap();
    assert_eq!(journal.status, RecoveryStatus::Completed);
    assert!(journal.steps.iter().all(|s| s.status == StepStatus::Done));
    assert_eq!(
        recovery.journals().await.unwrap(),
        std::slice::from_ref(&report.recovery_id)
    );
    assert!(
        report.table().contains("verdict: passed"),
        "{}",
        report.table()
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verdict"], "passed");

    // The journal is not taken for a run.
    let runs = crate::catalog::Catalog::new(sink.clone())
        .list_all()
        .await
        .unwrap();
    assert_eq!(runs.len(), 5);
}

#[tokio::test]
async fn a_failed_step_stops_there_and_resume_does_not_redo_the_steps_before_it() {
    let sink = Arc::new(MemorySink::new());
    backed_up(&sink, &["postgres", "vault-kv", "keycloak", "crds", "helm"]).await;
    let log = Log::default();
    let crds = logged("crds", &log);
    crds.fail.store(1, Ordering::SeqCst);
    let recovery = Recovery::stoa()
        .sink(sink.clone())
        .restore(logged("postgres", &log))
        .restore(logged("vault-kv", &log))
        .restore(logged("keycloak", &log))
        .restore(crds)
        .restore(logged("helm", &log))
        .build()
        .unwrap();
    let plan = recovery.plan().await.unwrap();
    log.lock().unwrap().clear();
    let e = recovery.apply(&plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(e.component(), Some("crds"));
    let ctx: std::collections::BTreeMap<_, _> = e.context().iter().cloned().collect();
    assert_eq!(ctx["step"], "crds");
    assert_eq!(ctx["steps done"], "postgres, vault-kv, keycloak");
    let id = ctx["recovery"].clone();
    assert!(ctx["resume"].contains(&id));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "restore:postgres",
            "restore:vault-kv",
            "restore:keycloak",
            "restore:crds"
        ]
    );
    let journal = recovery.journal(&id).await.unwrap();
    assert_eq!(journal.status, RecoveryStatus::Failed);
    let failed = journal.failed_step().unwrap();
    assert_eq!(failed.name, "crds");
    assert!(failed.error.as_deref().unwrap().contains("went away"));
    assert_eq!(journal.step("helm").unwrap().status, StepStatus::Pending);

    log.lock().unwrap().clear();
    let report = recovery.resume(&id).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["plan:crds", "restore:crds", "plan:helm", "restore:helm"],
        "resume plans and applies only the steps not done"
    );
    assert_eq!(report.recovery_id, id);
    assert_eq!(report.verdict, Verdict::Passed);
    assert_eq!(
        report
            .steps
            .iter()
            .map(|s| s.done_earlier)
            .collect::<Vec<_>>(),
        [true, true, true, false, false]
    );
    let journal = recovery.journal(&id).await.unwrap();
    assert_eq!(journal.status, RecoveryStatus::Completed);
    assert_eq!(journal.step("crds").unwrap().attempts, 2);
    assert_eq!(journal.step("postgres").unwrap().attempts, 1);

    // Resuming a completed recovery runs nothing.
    log.lock().unwrap().clear();
    recovery.resume(&id).await.unwrap();
    assert!(log.lock().unwrap().is_empty());

    // A recovery with other steps cannot resume it.
    let other = Recovery::stoa()
        .sink(sink.clone())
        .restore(logged("postgres", &log))
        .build()
        .unwrap();
    let e = other.resume(&id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn a_missing_run_or_key_fails_the_plan_before_any_write() {
    let sink = Arc::new(MemorySink::new());
    backed_up(&sink, &["postgres"]).await;
    let log = Log::default();
    let e = Recovery::stoa()
        .sink(sink.clone())
        .restore(logged("postgres", &log))
        .restore(logged("keycloak", &log))
        .build()
        .unwrap()
        .plan()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("keycloak"), "{e}");
    assert!(log.lock().unwrap().is_empty(), "no step was planned");

    let mut postgres = logged("postgres", &log);
    postgres.missing_key = true;
    let recovery = Recovery::stoa()
        .sink(sink.clone())
        .restore(postgres)
        .build()
        .unwrap();
    let e = recovery.plan().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("postgres unseal shares"), "{e}");
    let ctx: std::collections::BTreeMap<_, _> = e.context().iter().cloned().collect();
    assert_eq!(ctx["step"], "postgres");
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    assert_eq!(writes(&sink), 0);

    // The drill reports it, and still cleans up.
    let drill = Recovery::stoa()
        .sink(sink.clone())
        .step({
            let mut p = logged("postgres", &log);
            p.missing_key = true;
            Step::restore(p).clean_up(Scratch("postgres", log.clone()))
        })
        .build()
        .unwrap()
        .drill()
        .await
        .unwrap();
    assert_eq!(drill.verdict, Verdict::Failed);
    assert!(drill.error.as_deref().unwrap().contains("unseal"));
    assert_eq!(*log.lock().unwrap(), ["clean:postgres"]);
}

#[tokio::test]
async fn each_failing_check_fails_the_verdict_by_name_and_resume_reruns_only_the_checks() {
    let sink = Arc::new(MemorySink::new());
    backed_up(&sink, &["postgres"]).await;
    let log = Log::default();
    let healthy = Arc::new(Mutex::new(false));
    let gate = healthy.clone();
    let recovery = Recovery::stoa()
        .sink(sink.clone())
        .restore(logged("postgres", &log))
        .checks(
            Checklist::new()
                .check(passing("pods", &log))
                .check(FnCheck::new("gateway /health", move |_| {
                    let up = *gate.lock().unwrap();
                    async move {
                        Ok(if up {
                            CheckOutcome::passed("HTTP 200")
                        } else {
                            CheckOutcome::failed("HTTP 503")
                        })
                    }
                }))
                .check(FnCheck::new("rows", |ctx: CheckContext| async move {
                    // Checks see the restored runs.
                    let n = ctx.artifacts_of("postgres").count();
                    Ok(CheckOutcome::skipped(format!("{n} artifact recorded")))
                }))
                .check(FnCheck::new("prometheus", |_| async {
                    Err(Error::new(ErrorKind::Unavailable, "connection refused"))
                }))
                .check(FnCheck::new("slow", |_| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(CheckOutcome::passed("late"))
                }))
                .timeout(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let plan = recovery.plan().await.unwrap();
    let report = recovery.apply(&plan).await.unwrap();
    assert_eq!(report.verdict, Verdict::Failed);
    let checks = report.checks.as_ref().unwrap();
    assert_eq!(checks.failed(), ["gateway /health", "prometheus", "slow"]);
    let by_name = |n: &str| checks.results.iter().find(|r| r.name == n).unwrap().clone();
    assert_eq!(by_name("pods").status, CheckStatus::Passed);
    assert_eq!(by_name("rows").detail, "1 artifact recorded");
    assert_eq!(by_name("rows").status, CheckStatus::Skipped);
    assert!(by_name("prometheus").detail.contains("connection refused"));
    assert!(by_name("slow").detail.contains("no answer within"));
    assert!(checks.table().contains("FAIL"), "{}", checks.table());
    let journal = recovery.journal(&report.recovery_id).await.unwrap();
    assert_eq!(journal.status, RecoveryStatus::Failed);
    assert_eq!(journal.failed_step().unwrap().name, "checks");

    // Only the checks run again; with the gateway up, prometheus still fails.
    *healthy.lock().unwrap() = true;
    log.lock().unwrap().clear();
    let again = recovery.resume(&report.recovery_id).await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["check:pods"]);
    assert_eq!(again.checks.unwrap().failed(), ["prometheus", "slow"]);
}

#[tokio::test]
async fn a_drill_cleans_up_every_scratch_target_also_when_a_check_fails() {
    let sink = Arc::new(MemorySink::new());
    backed_up(&sink, &["postgres", "keycloak"]).await;
    let log = Log::default();
    let drill = |check_passes: bool| {
        Recovery::stoa()
            .sink(sink.clone())
            .step(
                Step::restore(logged("postgres", &log))
                    .clean_up(Scratch("stoa_drill", log.clone())),
            )
            .step(
                Step::restore(logged("keycloak", &log))
                    .clean_up(Scratch("stoa-drill realm", log.clone())),
            )
            .checks(
                Checklist::new().check(FnCheck::new("login", move |_| async move {
                    Ok(if check_passes {
                        CheckOutcome::passed("token issued")
                    } else {
                        CheckOutcome::failed("401")
                    })
                })),
            )
            .build()
            .unwrap()
    };
    let good = drill(true).drill().await.unwrap();
    assert_eq!(good.verdict, Verdict::Passed, "{}", good.table());
    assert!(good.cleaned_up.iter().all(|c| c.ok));
    assert_eq!(good.cleaned_up.len(), 2);
    assert!(good.recovery.as_ref().unwrap().steps.len() == 3);
    let journal = drill(true)
        .journal(&good.recovery.as_ref().unwrap().recovery_id)
        .await
        .unwrap();
    assert!(journal.drill);

    log.lock().unwrap().clear();
    let bad = drill(false).drill().await.unwrap();
    assert_eq!(bad.verdict, Verdict::Failed);
    assert_eq!(
        bad.recovery
            .as_ref()
            .unwrap()
            .checks
            .as_ref()
            .unwrap()
            .failed(),
        ["login"]
    );
    let l = log.lock().unwrap().clone();
    assert_eq!(
        &l[l.len() - 2..],
        ["clean:stoa-drill realm", "clean:stoa_drill"],
        "{l:?}"
    );
    assert!(bad.table().contains("drill verdict: FAILED"));
}

#[tokio::test]
async fn the_builder_orders_by_dependencies_and_refuses_loops_and_unknown_steps() {
    let sink = Arc::new(MemorySink::new());
    let log = Log::default();
    let r = Recovery::builder()
        .sink(sink.clone())
        .step(Step::custom("dns", Resync(log.clone())).after("postgres"))
        .restore(logged("postgres", &log))
        .build()
        .unwrap();
    assert_eq!(r.step_names(), ["postgres", "dns"]);

    let e = Recovery::builder()
        .sink(sink.clone())
        .step(Step::custom("a", Resync(log.clone())).after("b"))
        .step(Step::custom("b", Resync(log.clone())).after("a"))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("loop"), "{e}");

    let e = Recovery::builder()
        .sink(sink.clone())
        .step(Step::custom("a", Resync(log.clone())).after("nothing"))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("nothing"), "{e}");

    let e = Recovery::builder()
        .sink(sink.clone())
        .restore(logged("postgres", &log))
        .restore(logged("postgres", &log))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("two"), "{e}");

    // Removing and inserting steps.
    let r = Recovery::stoa()
        .sink(sink.clone())
        .restore(logged("postgres", &log))
        .restore(logged("grafana", &log))
        .restore(logged("helm", &log))
        .without("grafana")
        .step_before("helm", Step::custom("wait", Resync(log.clone())))
        .build()
        .unwrap();
    assert_eq!(r.step_names(), ["postgres", "wait", "helm"]);

    assert!(Recovery::builder().sink(sink).build().is_err());
}

#[tokio::test]
async fn a_cancelled_recovery_stops_before_the_next_step_and_can_resume() {
    let sink = Arc::new(MemorySink::new());
    backed_up(&sink, &["postgres", "keycloak"]).await;
    let log = Log::default();
    let token = tokio_util::sync::CancellationToken::new();
    let cancel_after_first = token.clone();
    let build = |token: tokio_util::sync::CancellationToken| {
        Recovery::stoa()
            .sink(sink.clone())
            .restore(logged("postgres", &log))
            .step(Step::custom("stop", CancelStep(cancel_after_first.clone())))
            .restore(logged("keycloak", &log))
            .cancel(token)
            .build()
            .unwrap()
    };
    let recovery = build(token);
    let plan = recovery.plan().await.unwrap();
    log.lock().unwrap().clear();
    let e = recovery.apply(&plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    assert_eq!(*log.lock().unwrap(), ["restore:postgres"]);
    let id = e
        .context()
        .iter()
        .find(|(k, _)| k == "recovery")
        .unwrap()
        .1
        .clone();
    let journal = recovery.journal(&id).await.unwrap();
    assert_eq!(journal.step("postgres").unwrap().status, StepStatus::Done);
    assert_eq!(journal.step("stop").unwrap().status, StepStatus::Done);
    assert_eq!(journal.step("keycloak").unwrap().status, StepStatus::Failed);

    log.lock().unwrap().clear();
    let fresh = Recovery::stoa()
        .sink(sink.clone())
        .restore(logged("postgres", &log))
        .step(Step::custom("stop", Resync(log.clone())))
        .restore(logged("keycloak", &log))
        .build()
        .unwrap();
    fresh.resume(&id).await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["plan:keycloak", "restore:keycloak"]);
}

/// A step that cancels the recovery it runs in (an operator's Ctrl-C mid-way).
#[derive(Debug)]
struct CancelStep(tokio_util::sync::CancellationToken);

#[async_trait]
impl CustomStep for CancelStep {
    async fn plan(&self, _: &StepContext<'_>) -> Result<RestoreReport> {
        Ok(RestoreReport::default())
    }
    async fn apply(&self, _: &StepContext<'_>) -> Result<RestoreReport> {
        self.0.cancel();
        Ok(RestoreReport::default())
    }
}

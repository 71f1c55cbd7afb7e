//! Pipeline runs against in-memory sinks: context on provider errors, failure kinds in the
//! report, summaries (indexes) after the artifacts they summarise, and retries.

use std::time::Duration;

use super::*;
use crate::error::ErrorKind;
use crate::manifest::{RunStatus, VerificationRecord};
use crate::sink::MemorySink;
use crate::source::{ArtifactPlan, Export, PreflightReport};
use crate::verify::VerifyContext;
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Where [`Bare`] fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    Nowhere,
    Preflight,
    Discover,
    Export,
    Stream,
    Finish,
}

/// A source whose errors carry no context at all, as a provider that leaves naming the
/// component, operation and artifact to the pipeline.
#[derive(Debug)]
struct Bare {
    component: &'static str,
    at: At,
    kind: ErrorKind,
    retryable: bool,
}

impl Bare {
    fn failing(component: &'static str, at: At, kind: ErrorKind, retryable: bool) -> Self {
        Bare {
            component,
            at,
            kind,
            retryable,
        }
    }

    fn check(&self, here: At) -> Result<()> {
        if self.at == here {
            return Err(self.error());
        }
        Ok(())
    }

    fn error(&self) -> Error {
        Error::new(self.kind, "boom").with_retryable(self.retryable)
    }
}

#[async_trait]
impl Source for Bare {
    fn component(&self) -> &str {
        self.component
    }
    fn provider(&self) -> &str {
        "bare"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        self.check(At::Preflight)?;
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        self.check(At::Discover)?;
        Ok(vec![ArtifactPlan::new("a.bin", "application/octet-stream")])
    }
    async fn export(&self, _: &ArtifactPlan, _: &ExportContext) -> Result<Export> {
        self.check(At::Export)?;
        Ok(match self.at {
            At::Stream => Export::new(Box::pin(futures::stream::iter([
                Ok(bytes::Bytes::from_static(b"partial")),
                Err(self.error()),
            ]))),
            At::Finish => {
                let e = self.error();
                Export::with_finish(crate::stream::once(&b"all"[..]), async move { Err(e) })
            }
            _ => Export::new(crate::stream::once(&b"all"[..])),
        })
    }
}

/// A verifier failing without context.
#[derive(Debug)]
struct BareVerifier;

#[async_trait]
impl Verifier for BareVerifier {
    fn name(&self) -> &str {
        "bare"
    }
    fn applies_to(&self, _: &ArtifactRecord) -> bool {
        true
    }
    async fn verify(&self, _: &VerifyContext<'_>) -> Result<VerificationRecord> {
        Err(Error::new(ErrorKind::Unsupported, "cannot check this"))
    }
}

async fn run(sources: Vec<Bare>, verifier: bool) -> RunReport {
    let mut b = Pipeline::builder()
        .sink(Arc::new(MemorySink::new()))
        .attempts(1);
    for s in sources {
        b = b.source(Arc::new(s));
    }
    if verifier {
        b = b.verifier(Arc::new(BareVerifier));
    }
    b.build().unwrap().run().await.unwrap()
}

#[tokio::test]
async fn provider_errors_without_context_come_out_named() {
    let cases = [
        (At::Preflight, false, "preflight", false),
        (At::Discover, false, "discover", false),
        (At::Export, false, "export", true),
        (At::Stream, false, "put", true),
        (At::Finish, false, "export", true),
        (At::Nowhere, true, "verify", true),
    ];
    for (at, verifier, operation, has_artifact) in cases {
        let report = run(
            vec![Bare::failing("db", at, ErrorKind::Source, false)],
            verifier,
        )
        .await;
        let key = format!("{}/db/a.bin", report.run_id.prefix());
        let f = &report.manifest.failures[0];
        let artifact = has_artifact.then_some(key.as_str());
        assert_eq!(
            (
                f.component.as_str(),
                f.operation.as_str(),
                f.artifact.as_deref()
            ),
            ("db", operation, artifact),
            "{at:?}"
        );
        let e = report.into_result().unwrap_err();
        assert_eq!(
            (e.component(), e.operation(), e.artifact()),
            (Some("db"), Some(operation), artifact),
            "{at:?}: {e}"
        );
        assert!(e.to_string().contains("boom") || verifier, "{e}");
    }
}

#[tokio::test]
async fn into_result_keeps_the_kind_of_the_failure() {
    let report = run(
        vec![Bare::failing("db", At::Export, ErrorKind::NotFound, false)],
        false,
    )
    .await;
    assert_eq!(report.manifest.failures[0].kind, ErrorKind::NotFound);
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn mixed_kinds_take_the_first_failure_and_list_every_failure() {
    let report = run(
        vec![
            Bare::failing("b", At::Export, ErrorKind::PermissionDenied, false),
            Bare::failing("a", At::Discover, ErrorKind::NotFound, false),
            Bare::failing("c", At::Export, ErrorKind::Unauthenticated, false),
        ],
        false,
    )
    .await;
    let kinds: Vec<ErrorKind> = report.manifest.failures.iter().map(|f| f.kind).collect();
    // Discovery failures first, then artifacts by key.
    assert_eq!(
        kinds,
        [
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::Unauthenticated
        ]
    );
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!((e.component(), e.operation()), (None, Some("backup run")));
    let text = e.to_string();
    for part in [
        "[a] discover",
        "[b] export",
        "[c] export",
        "permission denied",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(e.hint().unwrap().contains("fix the failures listed"));
}

#[tokio::test]
async fn into_result_is_retryable_only_when_every_failure_is() {
    let unavailable = |c| Bare::failing(c, At::Export, ErrorKind::Unavailable, true);
    let report = run(vec![unavailable("a"), unavailable("b")], false).await;
    assert!(report.manifest.failures.iter().all(|f| f.retryable));
    let e = report.into_result().unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unavailable);

    let config = Bare::failing("b", At::Preflight, ErrorKind::Config, false);
    let e = run(vec![unavailable("a"), config], false)
        .await
        .into_result()
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test]
async fn a_common_hint_status_and_context_are_kept_and_said_once() {
    #[derive(Debug)]
    struct Http;
    #[async_trait]
    impl Source for Http {
        fn component(&self) -> &str {
            "grafana"
        }
        fn provider(&self) -> &str {
            "http"
        }
        async fn preflight(&self) -> Result<PreflightReport> {
            Err(Error::new(ErrorKind::Unauthenticated, "HTTP 401")
                .with_http_status(401)
                .with_context("path", "/api/health")
                .with_hint("check the token"))
        }
        async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
            Ok(Vec::new())
        }
        async fn export(&self, _: &ArtifactPlan, _: &ExportContext) -> Result<Export> {
            unreachable!()
        }
    }
    let report = Pipeline::builder()
        .sink(Arc::new(MemorySink::new()))
        .source(Arc::new(Http))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let f = &report.manifest.failures[0];
    assert_eq!(
        (f.http_status, f.hint.as_deref()),
        (Some(401), Some("check the token"))
    );
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    assert_eq!(e.http_status(), Some(401));
    assert_eq!(e.context_value("path"), Some("/api/health"));
    assert_eq!(e.hint(), Some("check the token"));
    assert_eq!(e.to_string().matches("check the token").count(), 1, "{e}");
}

/// Exports `objects` (the first ones slowest, `broken` failing) and an index summary
/// listed first, which records what it was handed.
#[derive(Debug)]
struct Indexed {
    component: &'static str,
    objects: Vec<&'static str>,
    broken: Option<&'static str>,
    finished: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(String, usize, usize)>>>,
}

impl Indexed {
    fn new(component: &'static str, objects: Vec<&'static str>) -> Self {
        Indexed {
            component,
            objects,
            broken: None,
            finished: Arc::default(),
            seen: Arc::default(),
        }
    }
}

#[async_trait]
impl Source for Indexed {
    fn component(&self) -> &str {
        self.component
    }
    fn provider(&self) -> &str {
        "test"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        let mut plans = vec![ArtifactPlan::new("index.json", "text/plain").summary(true)];
        plans.extend(
            self.objects
                .iter()
                .map(|o| ArtifactPlan::new(*o, "text/plain")),
        );
        if let Some(b) = self.broken {
            plans.push(ArtifactPlan::new(b, "text/plain"));
        }
        Ok(plans)
    }
    async fn export(&self, plan: &ArtifactPlan, ctx: &ExportContext) -> Result<Export> {
        let done = self.finished.load(Ordering::SeqCst);
        self.seen
            .lock()
            .unwrap()
            .push((plan.name.clone(), done, ctx.stored.len()));
        if plan.summary {
            let lines: Vec<String> = ctx
                .stored
                .iter()
                .map(|r| format!("{} {} {}", r.name, r.plain_size, r.plain_sha256))
                .collect();
            return Ok(Export::new(crate::stream::once(lines.join("\n"))));
        }
        if Some(plan.name.as_str()) == self.broken {
            return Err(Error::source_failed("this one breaks"));
        }
        let pos = self.objects.iter().position(|o| *o == plan.name).unwrap();
        // Earlier objects take longer, so they finish in reverse order.
        let delay = (self.objects.len() - pos) as u64 * 20;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let finished = self.finished.clone();
        let body = format!("body of {}", plan.name).repeat(pos + 1);
        Ok(Export::with_finish(crate::stream::once(body), async move {
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(crate::source::Facts::new())
        }))
    }
}

#[tokio::test]
async fn summaries_are_exported_last_with_the_records_of_their_source() {
    let mut grafana = Indexed::new("grafana", vec!["a", "b", "c"]);
    grafana.broken = Some("broken");
    let grafana = Arc::new(grafana);
    let other = Arc::new(Indexed::new("other", vec!["x"]));
    let sink = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(grafana.clone())
        .source(other.clone())
        .sink(sink.clone())
        .concurrency(16)
        .attempts(1)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    // The broken artifact fails the run; the summary still lists what was stored.
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!(report.manifest.failures.len(), 1);

    let seen = grafana.seen.lock().unwrap().clone();
    for (name, finished_before, stored) in &seen {
        if name == "index.json" {
            // Exported after every other artifact finished, even with room to run
            // everything at once and the summary listed first.
            assert_eq!((*finished_before, *stored), (3, 3), "{seen:?}");
        } else {
            assert_eq!(*stored, 0, "{name} was handed records: {seen:?}");
        }
    }
    assert_eq!(seen.last().unwrap().0, "index.json", "{seen:?}");

    let records: Vec<&ArtifactRecord> = report
        .manifest
        .artifacts
        .iter()
        .filter(|r| r.component == "grafana" && r.name != "index.json")
        .collect();
    let want: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.plain_size, r.plain_sha256))
        .collect();
    let index = report
        .manifest
        .artifacts
        .iter()
        .find(|r| r.component == "grafana" && r.name == "index.json")
        .unwrap();
    let text = crate::stream::collect(sink.get(&index.key).await.unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), want.join("\n"));
    assert_eq!(want.len(), 3);
    // The other source's summary saw only its own artifact.
    let other_seen = other.seen.lock().unwrap().clone();
    assert!(
        other_seen.contains(&("index.json".to_string(), 1, 1)),
        "{other_seen:?}"
    );
}

#[tokio::test]
async fn with_one_artifact_at_a_time_a_summary_listed_first_does_not_block() {
    let src = Arc::new(Indexed::new("grafana", vec!["a", "b"]));
    let report = Pipeline::builder()
        .source(src.clone())
        .sink(Arc::new(MemorySink::new()))
        .concurrency(1)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete());
    let names: Vec<String> = src
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(names, ["a", "b", "index.json"]);
}

mod build;
mod finish;
mod heartbeat;
mod inline;
mod integrity;
mod lock;
mod support;

//! Exec mode: run `pg_dump` inside the database's pod (the library equivalent of
//! `kubectl exec deploy/postgres -n stoa-system -- pg_dump …`) through the Kubernetes exec
//! API, streaming its stdout into the pipeline.
//!
//! Same rules as a local child: a non-zero exit status fails the artifact with the tail of
//! the command's stderr, and dropping the stream (a cancelled run) closes the exec session.
//!
//! The password never travels: a command line inside the pod would show in the API
//! server's audit log. The command relies on the pod's own authentication (peer or trust
//! on its Unix socket, `PGPASSWORD`/`.pgpass` in the container). Exact row counts need an
//! SQL connection and are not taken in this mode; the dump's table of contents is still read
//! from the stream and recorded.

use std::fmt;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::source::{
    to_facts, ArtifactPlan, Export, ExportContext, PreflightReport, Source,
};

use super::dump_header;
use super::facts::{PostgresFacts, TocFacts};
use super::source::{dump_plan, planned_database, DatabaseSelection, PostgresSource};
use super::COMPONENT;
use crate::kubernetes::PodExec;

/// Which pod runs `pg_dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodRef {
    /// A pod by name.
    Name(String),
    /// The first running pod (by name) matching a label selector, e.g.
    /// `app.kubernetes.io/name=postgres` — what `kubectl exec deploy/postgres` resolves to.
    Selector(String),
}

/// Where `pg_dump` runs in exec mode.
#[derive(Clone)]
pub struct PodTarget {
    client: kube::Client,
    namespace: String,
    pod: PodRef,
    container: Option<String>,
    pg_dump: String,
}

impl fmt::Debug for PodTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodTarget")
            .field("namespace", &self.namespace)
            .field("pod", &self.pod)
            .field("container", &self.container)
            .field("pg_dump", &self.pg_dump)
            .finish()
    }
}

impl PodTarget {
    /// `pg_dump` runs in `pod` of `namespace`, using the given client (in-cluster config or
    /// kubeconfig).
    pub fn new(client: kube::Client, namespace: impl Into<String>, pod: PodRef) -> Self {
        PodTarget {
            client,
            namespace: namespace.into(),
            pod,
            container: None,
            pg_dump: "pg_dump".into(),
        }
    }

    /// The container to exec into (default: the pod's first).
    pub fn container(mut self, container: impl Into<String>) -> Self {
        self.container = Some(container.into());
        self
    }

    /// The `pg_dump` program inside the container (default `pg_dump` on its PATH).
    pub fn pg_dump(mut self, program: impl Into<String>) -> Self {
        self.pg_dump = program.into();
        self
    }

    async fn resolve(&self) -> Result<PodExec> {
        let name = match &self.pod {
            PodRef::Name(n) => n.clone(),
            PodRef::Selector(sel) => {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
                let list = pods
                    .list(&ListParams::default().labels(sel))
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Unavailable, format!("cannot list pods matching '{sel}' in namespace {}: {e}", self.namespace))
                            .with_operation("find pod")
                            .with_hint("check the selector, the namespace and that the service account may list pods")
                    })?;
                let mut names: Vec<(bool, String)> = list
                    .items
                    .iter()
                    .filter_map(|p| {
                        let running =
                            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                        p.metadata.name.clone().map(|n| (!running, n))
                    })
                    .collect();
                names.sort();
                names.into_iter().next().map(|(_, n)| n).ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("no pod matches '{sel}' in namespace {}", self.namespace),
                    )
                    .with_operation("find pod")
                    .with_hint("is the database running? check the label selector")
                })?
            }
        };
        let mut exec =
            PodExec::new(self.client.clone(), &self.namespace, name).component(COMPONENT);
        if let Some(c) = &self.container {
            exec = exec.container(c);
        }
        Ok(exec)
    }
}

/// A [`PostgresSource`] whose `pg_dump` runs inside a pod. Options (databases, filters,
/// owner/privileges, compression location) come from the wrapped source; database names
/// must be given explicitly (discovery of all databases needs an SQL connection).
#[derive(Debug, Clone)]
pub struct PostgresPodSource {
    inner: PostgresSource,
    target: PodTarget,
}

impl PostgresPodSource {
    /// Runs `inner`'s dumps in `target`. Refuses a password in `inner`'s connection: it
    /// could only reach the pod on a command line.
    pub fn new(inner: PostgresSource, target: PodTarget) -> Result<Self> {
        if inner.connection().has_password() {
            return Err(Error::config("exec mode cannot pass a password into the pod")
                .with_component(COMPONENT)
                .with_operation("validate config")
                .with_hint("drop the password: pg_dump in the pod authenticates with the pod's own settings (socket peer/trust auth, PGPASSWORD or .pgpass in the container)"));
        }
        if matches!(inner.database_selection(), DatabaseSelection::All) {
            return Err(Error::config("exec mode needs database names")
                .with_component(COMPONENT)
                .with_operation("validate config")
                .with_hint("name the databases to dump with database(...) or databases(...)"));
        }
        Ok(PostgresPodSource { inner, target })
    }

    /// The command line run in the pod for `database` (no secrets in it).
    pub fn command(&self, database: &str) -> Vec<String> {
        let spec = self.inner.pg_dump_command(database, None);
        std::iter::once(self.target.pg_dump.clone())
            .chain(spec.args)
            .collect()
    }

    fn databases(&self) -> Vec<String> {
        match self.inner.database_selection() {
            DatabaseSelection::Named(n) => n.clone(),
            DatabaseSelection::Connection => vec![self.inner.connection().get_dbname().to_string()],
            DatabaseSelection::All => Vec::new(),
        }
    }
}

#[async_trait]
impl Source for PostgresPodSource {
    fn component(&self) -> &str {
        self.inner.component()
    }

    fn provider(&self) -> &str {
        "pg_dump (pod exec)"
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let exec = self.target.resolve().await?;
        let cmd = vec![self.target.pg_dump.clone(), "--version".to_string()];
        let (_, out) = exec
            .run_collect(&cmd, None, 4096)
            .await
            .map_err(|e| e.or_operation("preflight"))?;
        let version = String::from_utf8_lossy(&out).trim().to_string();
        Ok(PreflightReport {
            server_version: None,
            notes: vec![format!("in pod: {version}")],
        })
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        self.databases()
            .into_iter()
            .map(|db| dump_plan(db, false))
            .collect()
    }

    async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        let db = planned_database(artifact)?;
        let exec = self.target.resolve().await?;
        let command = self.command(&db);
        let described = exec.describe(&command);
        let es = exec.spawn(&command, None).await?;
        let (stream, toc_rx) = dump_header::inspect(es.stream);
        Ok(Export::with_finish(stream, async move {
            let stdout_bytes = es.outcome.await.ok().map(|o| o.stdout_bytes);
            let summary = toc_rx.borrow().clone();
            to_facts(&PostgresFacts {
                database: Some(db),
                command: Some(described),
                exact_counts: Some("not taken in exec mode (no SQL connection)".into()),
                stdout_bytes,
                toc: TocFacts::read(summary.as_ref(), "the pod's pg_dump")?,
                ..PostgresFacts::default()
            })
        }))
    }
}

//! Helm values: read Helm 3 release storage, back up the user-supplied values of the latest
//! deployed revision; restore writes the values file and the `helm upgrade --install`
//! command that re-creates the release.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::Value;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::manifest::ArtifactRecord;
use stoa_backup_core::restore::{
    restore_each, ExistingDataPolicy, PerArtifact, RestoreContext, RestoreOptions, RestoreReport,
    Restorer,
};
use stoa_backup_core::source::{
    to_facts, ArtifactPlan, Export, ExportContext, PreflightReport, Source,
};
use stoa_backup_core::stream::{self, ByteStream};

use super::facts::HelmValuesFacts;
use super::{kube_error, parse_yaml_documents, to_yaml, KubeClient, YAML_CONTENT_TYPE};

type Labels = Option<BTreeMap<String, String>>;

/// A kind Helm stores releases in (its `driver`): labels `name`, `version`, `status` and
/// the encoded release under the data key `release`.
trait ReleaseStorage:
    kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    fn into_release(self) -> (Labels, Vec<u8>);
}

impl ReleaseStorage for Secret {
    fn into_release(self) -> (Labels, Vec<u8>) {
        let data = self.data.and_then(|mut d| d.remove("release"));
        (self.metadata.labels, data.map(|b| b.0).unwrap_or_default())
    }
}

impl ReleaseStorage for ConfigMap {
    fn into_release(self) -> (Labels, Vec<u8>) {
        let data = self.data.and_then(|mut d| d.remove("release"));
        let data = data.map(String::into_bytes).unwrap_or_default();
        (self.metadata.labels, data)
    }
}

/// Where Helm keeps releases (recorded as the `driver` fact: `secret`, `configmap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HelmDriver {
    /// Secrets of type `helm.sh/release.v1` (Helm's default).
    #[default]
    Secret,
    /// ConfigMaps (`HELM_DRIVER=configmap`).
    ConfigMap,
}

/// One decoded revision of a Helm release (the fields that matter for backup).
#[derive(Debug, Clone, PartialEq)]
pub struct HelmRelease {
    /// Release name.
    pub name: String,
    /// Release namespace.
    pub namespace: String,
    /// Revision number.
    pub revision: u64,
    /// `deployed`, `superseded`, `failed`…
    pub status: String,
    /// Chart name (`chart.metadata.name`).
    pub chart_name: String,
    /// Chart version.
    pub chart_version: String,
    /// App version, when the chart has one.
    pub app_version: Option<String>,
    /// The user-supplied values (`config`; `{}` when none).
    pub config: Value,
}

/// Decodes `data.release` of a release Secret or ConfigMap: the bytes Helm stored (the
/// Secret's value after the API's own base64 is undone) are base64 → gzip → JSON (older
/// releases: base64 → JSON).
pub fn decode_release(stored: &[u8]) -> Result<HelmRelease> {
    let bad = |m: String| Error::integrity(format!("cannot decode a Helm release: {m}"));
    let trimmed: Vec<u8> = stored
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&trimmed)
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let json = if raw.starts_with(&[0x1f, 0x8b, 0x08]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("bad gzip: {e}")))?;
        out
    } else {
        raw
    };
    let v: Value = serde_json::from_slice(&json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let meta = &v["chart"]["metadata"];
    Ok(HelmRelease {
        name: s(&v["name"]),
        namespace: s(&v["namespace"]),
        revision: v["version"].as_u64().unwrap_or(0),
        status: s(&v["info"]["status"]),
        chart_name: s(&meta["name"]),
        chart_version: s(&meta["version"]),
        app_version: meta["appVersion"].as_str().map(str::to_string),
        config: match &v["config"] {
            Value::Null => Value::Object(Default::default()),
            c => c.clone(),
        },
    })
}

/// What to back up: one release, or every release of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) namespace: String,
    pub(super) release: Option<String>,
}

/// Builds a [`HelmValuesSource`].
#[derive(Debug, Clone)]
pub struct HelmValuesSourceBuilder {
    client: KubeClient,
    component: String,
    targets: Vec<Target>,
    driver: HelmDriver,
    sensitive: bool,
}

impl HelmValuesSourceBuilder {
    /// The component name (default `helm`).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }

    /// Backs up release `release` of `namespace`.
    pub fn release(mut self, namespace: impl Into<String>, release: impl Into<String>) -> Self {
        self.targets.push(Target {
            namespace: namespace.into(),
            release: Some(release.into()),
        });
        self
    }

    /// Backs up every release of `namespace`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.targets.push(Target {
            namespace: namespace.into(),
            release: None,
        });
        self
    }

    /// Where Helm stores releases (default Secrets).
    pub fn driver(mut self, driver: HelmDriver) -> Self {
        self.driver = driver;
        self
    }

    /// Whether the values are marked as holding secrets (default true: values files often
    /// carry passwords, so the pipeline insists on encryption).
    pub fn sensitive(mut self, sensitive: bool) -> Self {
        self.sensitive = sensitive;
        self
    }

    /// Checks the configuration and builds the source.
    pub fn build(self) -> Result<HelmValuesSource> {
        if self.targets.is_empty() {
            return Err(Error::config("no Helm release configured")
                .with_component(self.component)
                .with_hint(
                    "call .release(\"stoa-system\", \"stoa\") or .namespace(\"stoa-system\")",
                ));
        }
        for t in &self.targets {
            if t.namespace.is_empty() || t.release.as_deref() == Some("") {
                return Err(
                    Error::config("empty namespace or release name").with_component(self.component)
                );
            }
        }
        Ok(HelmValuesSource {
            client: self.client,
            component: self.component,
            targets: self.targets,
            driver: self.driver,
            sensitive: self.sensitive,
        })
    }
}

/// Backs up the user-supplied values (`helm get values`, not `--all`) of the latest
/// *deployed* revision of Helm 3 releases, as YAML: one artifact
/// `<namespace>/<release>.values.yaml` per release. Facts: [`HelmValuesFacts`] (`release`,
/// `namespace`, `revision`, `status`, `chart`, `chart_version`, `app_version`, `driver`).
/// Component `helm`, provider `helm`. Reads Secrets (or ConfigMaps) labelled `owner=helm`; needs
/// `list` on them.
#[derive(Debug, Clone)]
pub struct HelmValuesSource {
    pub(super) client: KubeClient,
    pub(super) component: String,
    pub(super) targets: Vec<Target>,
    pub(super) driver: HelmDriver,
    sensitive: bool,
}

impl HelmValuesSource {
    /// Starts a builder (component `helm`, Secret driver, values marked sensitive).
    pub fn builder(client: Client) -> HelmValuesSourceBuilder {
        HelmValuesSourceBuilder {
            client: KubeClient(client),
            component: "helm".into(),
            targets: Vec::new(),
            driver: HelmDriver::Secret,
            sensitive: true,
        }
    }

    /// The storage objects of one driver: their labels and encoded release.
    async fn list_storage<K: ReleaseStorage>(
        &self,
        namespace: &str,
        lp: &ListParams,
        what: &str,
    ) -> Result<Vec<(Labels, Vec<u8>)>> {
        let api: Api<K> = Api::namespaced(self.client.0.clone(), namespace);
        let list = api.list(lp).await.map_err(|e| kube_error(e, what))?;
        Ok(list.items.into_iter().map(K::into_release).collect())
    }

    /// Release storage objects of a namespace: (release, revision, status label, data).
    async fn stored(
        &self,
        namespace: &str,
        release: Option<&str>,
    ) -> Result<Vec<(String, u64, String, Vec<u8>)>> {
        let mut selector = "owner=helm".to_string();
        if let Some(r) = release {
            selector.push_str(&format!(",name={r}"));
        }
        let lp = ListParams::default().labels(&selector);
        let what = match release {
            Some(r) => format!("list the revisions of Helm release {namespace}/{r}"),
            None => format!("list the Helm releases of namespace {namespace}"),
        };
        let stored = match self.driver {
            HelmDriver::Secret => self.list_storage::<Secret>(namespace, &lp, &what).await?,
            HelmDriver::ConfigMap => {
                self.list_storage::<ConfigMap>(namespace, &lp, &what)
                    .await?
            }
        };
        let out = stored
            .into_iter()
            .map(|(labels, data)| {
                let label = |k: &str| {
                    labels
                        .as_ref()
                        .and_then(|l| l.get(k))
                        .cloned()
                        .unwrap_or_default()
                };
                let revision = label("version").parse().unwrap_or(0);
                (label("name"), revision, label("status"), data)
            })
            .collect();
        Ok(out)
    }

    /// The latest deployed revision of every configured release.
    async fn latest_deployed(&self) -> Result<Vec<HelmRelease>> {
        let mut releases = Vec::new();
        for t in &self.targets {
            let stored = self.stored(&t.namespace, t.release.as_deref()).await?;
            let mut names: Vec<String> = stored.iter().map(|s| s.0.clone()).collect();
            if let Some(r) = &t.release {
                names.push(r.clone());
            }
            names.sort();
            names.dedup();
            for name in names {
                let revisions: Vec<&(String, u64, String, Vec<u8>)> =
                    stored.iter().filter(|s| s.0 == name).collect();
                let deployed = revisions
                    .iter()
                    .filter(|s| s.2 == "deployed")
                    .max_by_key(|s| s.1);
                let Some(d) = deployed else {
                    let latest = revisions
                        .iter()
                        .max_by_key(|s| s.1)
                        .map(|s| format!("latest revision {} is {}", s.1, s.2))
                        .unwrap_or_else(|| "no revision found".into());
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("Helm release {}/{name} has no deployed revision ({latest})", t.namespace),
                    )
                    .with_hint("check `helm history` for the release; fix the release or back up another one"));
                };
                let mut rel = decode_release(&d.3).map_err(|e| {
                    e.with_context(
                        "release",
                        format!("{}/{name} revision {}", t.namespace, d.1),
                    )
                })?;
                if rel.name.is_empty() {
                    rel.name = name.clone();
                }
                if rel.namespace.is_empty() {
                    rel.namespace = t.namespace.clone();
                }
                releases.push(rel);
            }
        }
        releases.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(releases)
    }

    fn facts(&self, r: &HelmRelease) -> HelmValuesFacts {
        HelmValuesFacts {
            release: r.name.clone(),
            namespace: r.namespace.clone(),
            revision: r.revision,
            status: r.status.clone(),
            chart: r.chart_name.clone(),
            chart_version: r.chart_version.clone(),
            app_version: r.app_version.clone(),
            driver: self.driver,
        }
    }
}

#[async_trait]
impl Source for HelmValuesSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        "helm"
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let info = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| kube_error(e, "read the API server version"))?;
        Ok(PreflightReport {
            server_version: Some(info.git_version),
            notes: Vec::new(),
        })
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        self.latest_deployed()
            .await?
            .iter()
            .map(|r| {
                let mut p = ArtifactPlan::new(
                    format!("{}/{}.values.yaml", r.namespace, r.name),
                    YAML_CONTENT_TYPE,
                )
                .text(true)
                .sensitive(self.sensitive);
                p.facts = to_facts(&self.facts(r))?;
                Ok(p)
            })
            .collect()
    }

    async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        let planned: HelmValuesFacts = artifact.facts_as()?;
        let (ns, name) = (planned.namespace.as_str(), planned.release.as_str());
        let release = self
            .latest_deployed()
            .await?
            .into_iter()
            .find(|r| r.namespace == ns && r.name == name)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("Helm release {ns}/{name} disappeared since discovery"),
                )
            })?;
        let text = to_yaml(&release.config)?;
        let facts = to_facts(&self.facts(&release))?;
        Ok(Export::with_finish(
            stream::once(text.into_bytes()),
            async move { Ok(facts) },
        ))
    }
}

/// Writes backed-up Helm values to `<dir>/<namespace>/<release>.values.yaml` and reports
/// (and, by default, prints) the command that re-creates the release:
/// `helm upgrade --install <release> <chart> --namespace <ns> --create-namespace --version
/// <chart version> -f <file>`. It does not talk to Helm or the cluster.
///
/// The chart reference defaults to the chart name from the backup; set the repository
/// reference with [`HelmValuesRestorer::chart`] (e.g. `stoa/stoa-platform` or an OCI URL).
/// An existing different file is refused ([`ExistingDataPolicy::Fail`]), kept
/// ([`ExistingDataPolicy::Skip`]) or replaced ([`ExistingDataPolicy::Overwrite`]); a dry
/// run writes nothing.
#[derive(Debug, Clone)]
pub struct HelmValuesRestorer {
    component: String,
    dir: PathBuf,
    chart: Option<String>,
    print: bool,
}

impl HelmValuesRestorer {
    /// A restorer writing under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        HelmValuesRestorer {
            component: "helm".into(),
            dir: dir.into(),
            chart: None,
            print: true,
        }
    }

    /// The component restored (default `helm`).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }

    /// The chart reference used in the printed command.
    pub fn chart(mut self, chart: impl Into<String>) -> Self {
        self.chart = Some(chart.into());
        self
    }

    /// Whether the command is printed to stdout (default true; it is always in the
    /// report's notes and in its `command` fact).
    pub fn print_command(mut self, print: bool) -> Self {
        self.print = print;
        self
    }

    /// The `helm upgrade --install` command for a release whose values are at `file`.
    pub fn command(&self, facts: &HelmValuesFacts, file: &Path) -> String {
        let chart = self.chart.as_ref().unwrap_or(&facts.chart);
        let mut cmd = format!(
            "helm upgrade --install {} {} --namespace {} --create-namespace",
            shell_quote(&facts.release),
            shell_quote(chart),
            shell_quote(&facts.namespace)
        );
        if !facts.chart_version.is_empty() {
            cmd.push_str(&format!(" --version {}", shell_quote(&facts.chart_version)));
        }
        cmd.push_str(&format!(" -f {}", shell_quote(&file.display().to_string())));
        cmd
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\'])
        && !s.chars().any(char::is_control)
}

#[async_trait]
impl Restorer for HelmValuesRestorer {
    fn component(&self) -> &str {
        &self.component
    }

    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        restore_each(self, ctx).await
    }
}

#[async_trait]
impl PerArtifact for HelmValuesRestorer {
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let facts: HelmValuesFacts = artifact.facts_as()?;
        let (ns, release) = (&facts.namespace, &facts.release);
        if !safe_segment(ns) || !safe_segment(release) {
            return Err(Error::integrity(format!(
                "the artifact's facts name no valid release (namespace {ns:?}, release {release:?})"
            )));
        }
        let bytes = stream::collect(plain).await?;
        let text = String::from_utf8(bytes.clone())
            .map_err(|_| Error::integrity("the values are not UTF-8 text"))?;
        parse_yaml_documents(&text)?;
        let path = self.dir.join(ns).join(format!("{release}.values.yaml"));
        let command = self.command(&facts, &path);
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        let existing = tokio::fs::read(&path).await.ok();
        let action = match &existing {
            Some(old) if *old == bytes => "unchanged",
            Some(_) => match options.existing {
                ExistingDataPolicy::Fail => {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("{} exists and differs from the backup", path.display()),
                    )
                    .with_hint("restore with the overwrite policy, or into another directory"))
                }
                ExistingDataPolicy::Skip => "skip",
                ExistingDataPolicy::Overwrite => "update",
            },
            None => "create",
        };
        if !options.dry_run && matches!(action, "create" | "update") {
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| {
                    Error::from_io(e, format!("cannot create {}", parent.display()))
                })?;
            }
            let tmp = path.with_extension("yaml.tmp");
            tokio::fs::write(&tmp, &bytes)
                .await
                .map_err(|e| Error::from_io(e, format!("cannot write {}", tmp.display())))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| Error::from_io(e, format!("cannot write {}", path.display())))?;
        }
        match action {
            "create" => report.created += 1,
            "update" => report.updated += 1,
            _ => report.skipped += 1,
        }
        report.notes.push(format!("{action} {}", path.display()));
        report
            .notes
            .push(format!("re-create the release with: {command}"));
        report
            .facts
            .insert("values_file".into(), path.display().to_string().into());
        report
            .facts
            .insert("command".into(), command.clone().into());
        if self.print {
            println!("{command}");
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn encode(release: &Value) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(release.to_string().as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(gz.finish().unwrap())
            .into_bytes()
    }

    #[test]
    fn decodes_gzip_and_plain_releases() {
        let rel = serde_json::json!({"name": "stoa", "namespace": "s", "version": 3,
            "info": {"status": "deployed"},
            "chart": {"metadata": {"name": "stoa-platform", "version": "0.1.0", "appVersion": "2.0.0"}},
            "config": {"image": {"tag": "2.0.1"}}});
        let r = decode_release(&encode(&rel)).unwrap();
        assert_eq!(
            (r.revision, r.status.as_str(), r.chart_name.as_str()),
            (3, "deployed", "stoa-platform")
        );
        assert_eq!(r.config["image"]["tag"], "2.0.1");
        let plain = base64::engine::general_purpose::STANDARD.encode(rel.to_string());
        assert_eq!(decode_release(plain.as_bytes()).unwrap(), r);
        let mut no_config = rel.clone();
        no_config.as_object_mut().unwrap().remove("config");
        assert_eq!(
            decode_release(&encode(&no_config)).unwrap().config,
            serde_json::json!({})
        );
        assert!(decode_release(b"!!!").is_err());
    }

    #[test]
    fn command_is_quoted() {
        let r = HelmValuesRestorer::new("/tmp/x").chart("stoa/stoa-platform");
        let f = HelmValuesFacts {
            release: "stoa".into(),
            namespace: "stoa-system".into(),
            revision: 1,
            status: "deployed".into(),
            chart: "stoa-platform".into(),
            chart_version: "0.1.0".into(),
            app_version: None,
            driver: HelmDriver::Secret,
        };
        assert_eq!(
            r.command(&f, Path::new("/tmp/my values.yaml")),
            "helm upgrade --install stoa stoa/stoa-platform --namespace stoa-system --create-namespace --version 0.1.0 -f '/tmp/my values.yaml'"
        );
    }
}

//! The copy of one run: read-only checks first (so a run already there costs no write), then
//! the target's leases, the artifacts (hashed against the source manifest as they stream),
//! the check of the target's listing, and the manifest last.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::report::{CopyOutcome, RunCopy};
use super::verifying::{matches, verifying, Expected};
use super::Replicator;
use crate::catalog::RunVerification;
use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::lock::{LeaseKeeper, LeaseOwner, LockScope};
use crate::manifest::{ArtifactRecord, Manifest, RunId, RunStatus, VERIFICATIONS_DIR};
use crate::observer::Event;
use crate::sink::SinkExt;

/// What the target holds of a run.
enum TargetState {
    /// Complete with the same digests: nothing to do.
    Complete,
    /// Not complete (or damaged): what it lists under the run, key → size.
    Missing { listed: HashMap<ObjectKey, u64> },
}

/// What copying the artifacts did.
#[derive(Default)]
struct Copied {
    copied: usize,
    present: usize,
    bytes: u64,
    store_checked: usize,
    read_back: usize,
}

impl Replicator {
    /// Copies run `run` from the source to the target (see the [module docs](super)): a run
    /// already complete there with the same digests is left alone
    /// ([`CopyOutcome::AlreadyPresent`], nothing written), a partly copied one is completed.
    ///
    /// Fails with [`ErrorKind::NotFound`] when the run is not complete on the source,
    /// [`ErrorKind::Integrity`] when a source artifact is not what its manifest records
    /// (naming run, component and key; nothing of it is kept on the target) or its latest
    /// verification there failed, [`ErrorKind::Conflict`] when the target holds another
    /// content under the same run id or a run lock of one of its components is held,
    /// [`ErrorKind::Cancelled`] when cancelled. In every failure the run is not complete on
    /// the target (unless it was before).
    pub async fn copy_run(&self, run: &RunId) -> Result<RunCopy> {
        let started = Instant::now();
        let mut components = Vec::new();
        let result = self.copy_inner(run, started, &mut components).await;
        let result = result.map_err(|e| {
            e.or_operation("copy run")
                .with_context("run", run.as_str())
                .with_context("target", self.name.clone())
        });
        let (outcome, bytes, error) = match &result {
            Ok(c) => (Some(c.outcome), c.bytes_copied, None),
            Err(e) => (None, 0, Some(e)),
        };
        self.observer.on_event(&Event::ReplicationDone {
            run_id: run,
            target: &self.name,
            components: &components,
            outcome,
            bytes,
            duration: started.elapsed(),
            error,
        });
        match &result {
            Ok(c) if c.outcome.wrote() => {
                tracing::info!(run = %run, target = %self.name, outcome = c.outcome.as_str(), bytes = c.bytes_copied, "run replicated")
            }
            Ok(_) => {
                tracing::debug!(run = %run, target = %self.name, "run already on the target")
            }
            Err(e) => {
                tracing::warn!(run = %run, target = %self.name, error = %e, "replication failed")
            }
        }
        result
    }

    async fn copy_inner(
        &self,
        run: &RunId,
        started: Instant,
        components: &mut Vec<String>,
    ) -> Result<RunCopy> {
        let (manifest, manifest_bytes) = self.source_run(run).await?;
        *components = manifest.components();
        let copy = |outcome, c: Copied| RunCopy {
            run_id: run.clone(),
            target: self.name.clone(),
            components: manifest.components(),
            outcome,
            artifacts_copied: c.copied,
            artifacts_present: c.present,
            bytes_copied: c.bytes,
            store_checked: c.store_checked,
            read_back: c.read_back,
            duration_ms: started.elapsed().as_millis() as u64,
            verification: None,
        };
        // Read-only first: a run already there costs no write, not even a lease.
        if let TargetState::Complete = self.target_state(run, &manifest).await? {
            return Ok(copy(CopyOutcome::AlreadyPresent, Copied::default()));
        }
        self.check_sizes(&manifest)?;
        let keeper = self.take_leases(run, &manifest.components()).await?;
        let stop = CancellationToken::new();
        let work = async {
            let r = self
                .copy_locked(run, &manifest, &manifest_bytes, keeper.as_ref())
                .await;
            stop.cancel();
            r
        };
        let keep = async {
            if let Some(k) = &keeper {
                k.keep(&stop).await;
            }
        };
        let (result, ()) = tokio::join!(work, keep);
        if let Some(k) = &keeper {
            k.release().await;
        }
        let (outcome, copied) = result?;
        let mut out = copy(outcome, copied);
        if outcome.wrote() {
            out.verification = self.verify_copy(run).await?;
        }
        Ok(out)
    }

    /// Under the leases: the target state again (another copy may have finished meanwhile),
    /// the artifacts, the listing check and the manifest; stopped by a cancellation or a lost
    /// lease before the manifest.
    async fn copy_locked(
        &self,
        run: &RunId,
        manifest: &Manifest,
        manifest_bytes: &[u8],
        keeper: Option<&LeaseKeeper>,
    ) -> Result<(CopyOutcome, Copied)> {
        let lost = async {
            match keeper {
                Some(k) => {
                    k.lost().cancelled().await;
                    k.lost_error().unwrap_or_else(|| {
                        Error::internal("the run lock was lost").with_operation("renew run lock")
                    })
                }
                None => futures::future::pending().await,
            }
        };
        let work = async {
            let listed = match self.target_state(run, manifest).await? {
                TargetState::Complete => {
                    return Ok((CopyOutcome::AlreadyPresent, Copied::default()))
                }
                TargetState::Missing { listed } => listed,
            };
            let copied = self.copy_artifacts(run, manifest, &listed).await?;
            self.check_listed(run, manifest).await?;
            if let Some(k) = keeper {
                k.renew_now().await?;
            }
            let key = run.manifest_key();
            self.target_sink()
                .put_bytes(&key, bytes::Bytes::copy_from_slice(manifest_bytes))
                .await
                .map_err(|e| {
                    e.or_component(format!("storage ({})", self.target_sink().describe()))
                        .or_operation("write manifest")
                        .or_artifact(key.to_string())
                })?;
            let outcome = if copied.present > 0 || !listed.is_empty() {
                CopyOutcome::Completed
            } else {
                CopyOutcome::Copied
            };
            Ok((outcome, copied))
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Error::cancelled(format!(
                "the copy of run {run} to {} was cancelled: the run is not complete there; the next copy finishes it",
                self.name
            ))),
            e = lost => Err(e),
            r = work => r,
        }
    }

    /// The source's manifest (as stored, and parsed) of a complete run whose latest
    /// verification there, if any, passed.
    async fn source_run(&self, run: &RunId) -> Result<(Manifest, Vec<u8>)> {
        let key = run.manifest_key();
        let source = self.source_sink();
        let bytes = source.get_bytes(&key).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "run {run} is not complete on {} (no manifest): there is nothing to copy",
                        source.describe()
                    ),
                )
                .with_component("catalog")
                .with_operation("copy run")
                .with_artifact(key.to_string())
                .with_hint("list the source's complete runs and copy one of them")
            } else {
                e.or_operation("read manifest").or_artifact(key.to_string())
            }
        })?;
        let manifest = Manifest::from_json(&bytes).map_err(|e| e.with_artifact(key.to_string()))?;
        if &manifest.run_id != run || manifest.status != RunStatus::Complete {
            return Err(Error::integrity(format!(
                "the manifest of run {run} on {} is not that of a complete run {run}",
                source.describe()
            ))
            .with_artifact(key.to_string())
            .with_hint("the run is damaged on the source: do not copy it; inspect it by hand"));
        }
        let verifications: Vec<ObjectKey> = source
            .list(&format!("{}/{VERIFICATIONS_DIR}", run.prefix()))
            .await
            .map_err(|e| e.or_operation("list verifications"))?
            .into_iter()
            .map(|o| o.key)
            .collect();
        if let Some(latest) = verifications.iter().max() {
            let v: RunVerification = serde_json::from_slice(&source.get_bytes(latest).await?)
                .map_err(|e| {
                    Error::integrity(format!(
                        "the latest verification of run {run} cannot be read: {e}"
                    ))
                    .with_artifact(latest.to_string())
                    .with_hint("verify the run again on the source, then copy it")
                })?;
            if !v.ok {
                return Err(Error::integrity(format!(
                    "run {run} failed its latest verification on {} ({}): a damaged backup is not copied",
                    source.describe(),
                    v.at.to_rfc3339()
                ))
                .with_artifact(latest.to_string())
                .with_hint("copy another run; verify this one again once its storage is repaired"));
            }
        }
        Ok((manifest, bytes))
    }

    /// What the target holds of the run, compared by digest with the source's manifest.
    async fn target_state(&self, run: &RunId, source: &Manifest) -> Result<TargetState> {
        let target = self.target_sink();
        let listed: HashMap<ObjectKey, u64> = target
            .list(&run.prefix())
            .await
            .map_err(|e| {
                e.or_component(format!("storage ({})", target.describe()))
                    .or_operation("list target run")
            })?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        let key = run.manifest_key();
        if !listed.contains_key(&key) {
            return Ok(TargetState::Missing { listed });
        }
        let theirs = Manifest::from_json(&target.get_bytes(&key).await?)
            .map_err(|e| e.with_artifact(key.to_string()))?;
        let digests = |m: &Manifest| -> BTreeSet<(ObjectKey, u64, String)> {
            m.artifacts
                .iter()
                .map(|a| (a.key.clone(), a.stored_size, a.stored_sha256.clone()))
                .collect()
        };
        if theirs.run_id != source.run_id || digests(&theirs) != digests(source) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "run {run} on {} records other artifacts or digests than on {}: one run id, two contents",
                    self.name,
                    self.source_sink().describe()
                ),
            )
            .with_artifact(key.to_string())
            .with_hint("nothing was overwritten: inspect both copies (verify them), and delete the wrong one by hand"));
        }
        let all_listed = source
            .artifacts
            .iter()
            .all(|a| listed.get(&a.key) == Some(&a.stored_size));
        if all_listed {
            Ok(TargetState::Complete)
        } else {
            // Damaged there: repaired from the source, the manifest written again.
            Ok(TargetState::Missing { listed })
        }
    }

    /// Refuses, before any write, artifacts larger than the target takes.
    fn check_sizes(&self, manifest: &Manifest) -> Result<()> {
        let Some(max) = self.target_sink().capabilities().max_object_size else {
            return Ok(());
        };
        match manifest.artifacts.iter().find(|a| a.stored_size > max) {
            Some(a) => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "artifact {} holds {} bytes, more than {} takes ({max})",
                    a.key, a.stored_size, self.name
                ),
            )
            .with_component(a.component.clone())
            .with_artifact(a.key.to_string())
            .with_hint("replicate this component to a target without that limit")),
            None => Ok(()),
        }
    }

    /// The leases of the run's components on the target (in name order), or none without a
    /// lock; when one is held, those taken are given back and the refusal is the error.
    async fn take_leases(&self, run: &RunId, components: &[String]) -> Result<Option<LeaseKeeper>> {
        let Some(lock) = self.target_lock() else {
            return Ok(None);
        };
        let owner = self
            .owner
            .clone()
            .unwrap_or_else(LeaseOwner::this_process)
            .for_run(run.clone());
        let target = self.target_sink().describe();
        let mut held = Vec::new();
        for component in components.iter().collect::<BTreeSet<_>>() {
            let scope = LockScope::new(component.clone(), target.clone());
            let taken = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => Err(Error::cancelled(format!(
                    "the copy of run {run} was cancelled while taking the target's run lock; nothing was written"
                ))),
                r = lock.acquire(&scope, &owner, self.lock_ttl) => r,
            };
            match taken {
                Ok(h) => held.push(h),
                Err(e) => {
                    for h in &held {
                        if let Err(e) = lock.release(h).await {
                            tracing::warn!(scope = %h.scope(), error = %e, "could not release a run lock; it expires on its own");
                        }
                    }
                    return Err(e
                        .or_component(component.clone())
                        .or_operation("acquire run lock"));
                }
            }
        }
        Ok(Some(LeaseKeeper::new(lock, held, self.lock_ttl)))
    }

    /// Copies every artifact the target lacks (or holds with other bytes), checking each.
    async fn copy_artifacts(
        &self,
        run: &RunId,
        manifest: &Manifest,
        listed: &HashMap<ObjectKey, u64>,
    ) -> Result<Copied> {
        let mut out = Copied::default();
        let target = self.target_sink();
        let caps = target.capabilities();
        for a in &manifest.artifacts {
            let expected = self.expected(run, a);
            if listed.get(&a.key) == Some(&a.stored_size) && self.holds(a, &expected).await? {
                out.present += 1;
                continue;
            }
            if caps.prefers_plain_text && !is_text(a) {
                tracing::warn!(key = %a.key, target = %self.name, content_type = %a.content_type,
                    "copying a binary artifact into a target that prefers plain text (Git): it is stored as is, not diffable, and read whole into memory");
            }
            let stream = self.source_sink().get(&a.key).await.map_err(|e| {
                e.or_component(a.component.clone())
                    .or_operation("read source artifact")
                    .or_artifact(a.key.to_string())
            })?;
            let (stream, counted) = verifying(stream, expected.clone());
            let put = match target.put(&a.key, stream).await {
                Ok(p) => p,
                // The mismatch the stream found, whatever the sink made of its error.
                Err(e) => {
                    return Err(counted.failure().unwrap_or_else(|| {
                        e.or_component(a.component.clone())
                            .or_operation("write artifact")
                            .or_artifact(a.key.to_string())
                    }))
                }
            };
            if put.size != a.stored_size || counted.get() != a.stored_size {
                self.remove(&a.key).await;
                return Err(Error::integrity(format!(
                    "{} reports {} bytes stored where {} were sent",
                    self.name, put.size, a.stored_size
                ))
                .with_component(a.component.clone())
                .with_artifact(a.key.to_string())
                .with_hint("the target did not store every byte it was handed (a bug in the sink or a layer around it); the artifact was removed"));
            }
            if put.store_checked.is_some() {
                out.store_checked += 1;
            } else {
                if !self.holds(a, &expected).await? {
                    self.remove(&a.key).await;
                    return Err(Error::integrity(format!(
                        "{} does not hold the bytes it was sent: they differ when read back",
                        self.name
                    ))
                    .with_component(a.component.clone())
                    .with_artifact(a.key.to_string())
                    .with_hint(
                        "check the target's storage (disk, object store) and copy the run again",
                    ));
                }
                out.read_back += 1;
            }
            out.copied += 1;
            out.bytes += a.stored_size;
        }
        Ok(out)
    }

    /// Whether the target holds exactly the recorded bytes under the artifact's key.
    async fn holds(&self, a: &ArtifactRecord, expected: &Expected) -> Result<bool> {
        match self.target_sink().get(&a.key).await {
            Ok(stream) => matches(stream, expected).await.map_err(|e| {
                e.or_component(a.component.clone())
                    .or_operation("read back target artifact")
                    .or_artifact(a.key.to_string())
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e
                .or_component(a.component.clone())
                .or_operation("read back target artifact")
                .or_artifact(a.key.to_string())),
        }
    }

    /// The target lists every artifact at its recorded size (what makes the run complete).
    async fn check_listed(&self, run: &RunId, manifest: &Manifest) -> Result<()> {
        let listed: HashMap<ObjectKey, u64> = self
            .target_sink()
            .list(&run.prefix())
            .await
            .map_err(|e| e.or_operation("check copied artifacts"))?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        for a in &manifest.artifacts {
            if listed.get(&a.key) != Some(&a.stored_size) {
                return Err(Error::integrity(format!(
                    "{} does not list artifact {} at its {} bytes after the copy",
                    self.name, a.key, a.stored_size
                ))
                .with_component(a.component.clone())
                .with_operation("check copied artifacts")
                .with_artifact(a.key.to_string())
                .with_hint("something deleted or changed it meanwhile (retention there with a short grace period?): copy the run again"));
            }
        }
        Ok(())
    }

    fn expected(&self, run: &RunId, a: &ArtifactRecord) -> Expected {
        Expected {
            size: a.stored_size,
            sha256: a.stored_sha256.clone(),
            run: run.to_string(),
            component: a.component.clone(),
            key: a.key.to_string(),
            from: self.source_sink().describe(),
        }
    }

    /// Removes a rejected artifact from the target; best effort (the run is not complete).
    async fn remove(&self, key: &ObjectKey) {
        if let Err(e) = self.target_sink().delete(key).await {
            tracing::warn!(key = %key, error = %e, "could not delete a rejected copy");
        }
    }

    /// The full verification on the target, when asked for.
    async fn verify_copy(&self, run: &RunId) -> Result<Option<RunVerification>> {
        let Some(full) = &self.full else {
            return Ok(None);
        };
        let v = self
            .target
            .verify_run(run, &full.verifiers, &full.keyring)
            .await
            .map_err(|e| {
                e.or_hint(format!(
                    "the run is copied to {} but its verification there could not run: verify it again",
                    self.name
                ))
            })?;
        if !v.ok {
            let failed: Vec<String> = v
                .results
                .iter()
                .filter(|(_, r)| !r.ok)
                .map(|(k, r)| format!("{k}: {}", r.detail))
                .collect();
            return Err(Error::integrity(format!(
                "the copy of run {run} on {} failed its verification: {}",
                self.name,
                failed.join("; ")
            ))
            .with_operation("verify copy")
            .with_hint("the run is demoted on the target (not a restore candidate there); copy it again or check the target's storage"));
        }
        Ok(Some(v))
    }
}

/// Whether an artifact is text (YAML, JSON, plain text) as stored: not compressed or
/// encrypted.
fn is_text(a: &ArtifactRecord) -> bool {
    a.codecs.is_empty()
        && (a.content_type.starts_with("text/")
            || a.content_type.contains("json")
            || a.content_type.contains("yaml"))
}

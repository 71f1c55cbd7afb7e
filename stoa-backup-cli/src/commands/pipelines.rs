//! The pipeline of one component, as `backup` and `serve` run it: its source and verifier,
//! zstd, the configured encryption and labels, the run lock of the component in its storage
//! target (two CronJob pods or two replicas never back it up at once), the copy of each
//! complete, verified run to the component's `replicate_to` targets, the target's retention
//! (every component of the target by its own rules) applied after the run.

use std::sync::Arc;

use stoa_backup::core::{
    AgeEncryption, ChecksumVerifier, Keyring, Observer, Pipeline, Sink, ZstdCodec,
};
use tokio_util::sync::CancellationToken;

use super::backup::target_rules;
use crate::config::model::{Component, Config};
use crate::sources;

/// What every pipeline of a command shares.
pub struct Shared<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// The encryption of new artifacts.
    pub encryption: Option<&'a AgeEncryption>,
    /// The identities (for provider verifiers that read encrypted artifacts back).
    pub keyring: &'a Keyring,
}

/// Builds the pipeline of component `c` into `sink`, copying each complete, verified run to
/// `replicas` (its `replicate_to` targets that could be opened, by name), cancelled by
/// `cancel`, reporting to `observer`. Kubernetes sources connect here (to find the cluster).
pub async fn component_pipeline(
    shared: &Shared<'_>,
    c: &Component,
    sink: Arc<dyn Sink>,
    replicas: &[(String, Arc<dyn Sink>)],
    cancel: CancellationToken,
    observer: Arc<dyn Observer>,
) -> Result<Pipeline, String> {
    let source = sources::source(c).await.map_err(|e| e.to_string())?;
    let mut builder = Pipeline::builder()
        .source(source)
        .sink(sink)
        .compression(ZstdCodec::default())
        .retention(target_rules(shared.config, &c.storage))
        .apply_retention(true)
        .lock_in_sink()
        .observer(observer)
        .cancel(cancel);
    match sources::verifier(c) {
        Some(v) => builder = builder.verifier(v),
        // Only verified runs are copied: without a provider's verifier, the stored bytes are
        // read back and checked against their digests (what `config check` says).
        None if !c.replicate_to.is_empty() => builder = builder.verifier(ChecksumVerifier::new()),
        None => {}
    }
    for (name, replica) in replicas {
        builder = builder.replicate_to_named(name.clone(), replica.clone());
    }
    if let Some(e) = shared.encryption {
        builder = builder.encryption(e.clone());
    }
    if !shared.keyring.is_empty() {
        builder = builder.keyring(shared.keyring.clone());
    }
    for (k, v) in &c.labels {
        builder = builder.label(k, v);
    }
    builder.build().map_err(|e| e.to_string())
}

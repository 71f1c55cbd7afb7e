//! Restore drills into a scratch realm: [`ScratchRealm`] gives a recovery step that imports
//! the realm export under another realm name, and a clean-up that deletes that realm.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use stoa_backup_core::recovery::{CleanUp, Step};
use stoa_backup_core::{
    Error, ErrorKind, KeyNeeded, RestoreContext, RestoreReport, Restorer, Result,
};

use super::client::{AdminClient, KeycloakConnection};
use super::restore::KeycloakRestorer;
use crate::http;

/// A realm a drill imports into and deletes afterwards.
///
/// It only deletes a realm the drill created: the step's preflight refuses a realm name that
/// exists already (the production realm, or one a crashed drill left: delete it by hand
/// after a look), and the clean-up deletes the realm only once the step's restore started.
#[derive(Debug, Clone)]
pub struct ScratchRealm {
    client: AdminClient,
    connection: KeycloakConnection,
    realm: String,
    started: Arc<AtomicBool>,
}

impl ScratchRealm {
    /// A scratch realm `realm` on the server `connection` reaches. Refuses `master`.
    pub fn new(connection: KeycloakConnection, realm: impl Into<String>) -> Result<Self> {
        let realm = realm.into();
        super::validate_realm(&realm)?;
        if realm == "master" {
            return Err(Error::config("'master' cannot be a drill's scratch realm")
                .with_component(super::COMPONENT)
                .with_operation("drill")
                .with_hint("name a realm that does not exist, e.g. stoa-drill"));
        }
        Ok(ScratchRealm {
            client: AdminClient::new(connection.clone())?,
            connection,
            realm,
            started: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The scratch realm's name.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// A restore step importing the backed-up realm as the scratch realm, cleaned up by
    /// this.
    pub fn step(&self) -> Result<Step> {
        let inner = KeycloakRestorer::new(self.connection.clone())?.target_realm(&self.realm)?;
        Ok(Step::restore(IntoScratch {
            inner,
            scratch: self.clone(),
        })
        .clean_up(self.clone()))
    }
}

#[async_trait]
impl CleanUp for ScratchRealm {
    async fn clean_up(&self) -> Result<String> {
        if !self.started.load(Ordering::SeqCst) {
            return Ok(format!(
                "nothing to delete: no import into realm '{}' started",
                self.realm
            ));
        }
        let what = format!("deleting the scratch realm '{}'", self.realm);
        let answer = self
            .client
            .call(
                Method::DELETE,
                self.client.url(&["admin", "realms", &self.realm]),
                None,
                &what,
            )
            .await
            .map_err(|e| {
                e.or_component(super::COMPONENT)
                    .or_operation("delete scratch realm")
            })?;
        match answer.status.as_u16() {
            200..=299 => Ok(format!("deleted realm '{}'", self.realm)),
            404 => Ok(format!("realm '{}' was not there", self.realm)),
            _ => Err(http::status_error(&answer, &what)
                .with_component(super::COMPONENT)
                .with_operation("delete scratch realm")),
        }
    }
}

/// The Keycloak restorer of a drill: refuses a scratch realm that exists, and marks the
/// restore started for the clean-up.
#[derive(Debug)]
struct IntoScratch {
    inner: KeycloakRestorer,
    scratch: ScratchRealm,
}

#[async_trait]
impl Restorer for IntoScratch {
    fn component(&self) -> &str {
        Restorer::component(&self.inner)
    }

    async fn preflight(&self, ctx: &RestoreContext<'_>) -> Result<()> {
        if self
            .scratch
            .client
            .realm_exists(&self.scratch.realm)
            .await?
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the drill's scratch realm '{}' exists already",
                    self.scratch.realm
                ),
            )
            .with_operation("preflight drill")
            .with_hint("a drill imports only into a realm it creates: look at it, delete it, or name another scratch realm"));
        }
        self.inner.preflight(ctx).await
    }

    async fn keys_needed(&self, ctx: &RestoreContext<'_>) -> Result<Vec<KeyNeeded>> {
        self.inner.keys_needed(ctx).await
    }

    async fn plan(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        self.inner.plan(ctx).await
    }

    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        if !ctx.dry_run() {
            self.scratch.started.store(true, Ordering::SeqCst);
        }
        self.inner.restore(ctx).await
    }
}

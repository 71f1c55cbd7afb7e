//! Conditional puts on S3: `If-None-Match: *` to create, `If-Match: <ETag>` to replace
//! (object_store's `PutMode::Create` and `PutMode::Update`). Versions are ETags.
//!
//! AWS S3 has both since 2024 and evaluates them atomically; so do MinIO, Ceph RGW and
//! moto. A store that ignores the headers would make every conditional put succeed: check
//! it before relying on a run lock in such a bucket (the integration tests do, on the
//! servers they run against).

use bytes::Bytes;
use object_store::{GetOptions, ObjectStore, PutMode, PutOptions, UpdateVersion};
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::sink::{ObjectVersion, PutCondition, PutOutcome, VersionedObject};

use super::{S3Sink, COMPONENT};

impl S3Sink {
    pub(super) async fn get_versioned_inner(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<VersionedObject>> {
        let path = self.path("get versioned", key)?;
        let err = |e| self.err(e, "get versioned", Some(key.as_str()));
        let got = match self
            .inner
            .store
            .get_opts(&path, GetOptions::default())
            .await
        {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let etag = got.meta.e_tag.clone().ok_or_else(|| no_etag(key))?;
        let bytes = got.bytes().await.map_err(err)?;
        Ok(Some(VersionedObject {
            bytes,
            version: ObjectVersion::new(etag),
        }))
    }

    pub(super) async fn put_if_inner(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: PutCondition,
    ) -> Result<PutOutcome> {
        let path = self.path("conditional put", key)?;
        let mode = match condition {
            PutCondition::Absent => PutMode::Create,
            PutCondition::Matches(v) => PutMode::Update(UpdateVersion {
                e_tag: Some(v.as_str().to_string()),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..self.put_options()
        };
        match self.inner.store.put_opts(&path, bytes.into(), opts).await {
            Ok(r) => match r.e_tag {
                Some(etag) => Ok(PutOutcome::Written(ObjectVersion::new(etag))),
                // Written, but without the ETag the next compare needs: read it.
                None => match self.get_versioned_inner(key).await? {
                    Some(now) => Ok(PutOutcome::Written(now.version)),
                    None => Err(no_etag(key)),
                },
            },
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotModified { .. },
            ) => Ok(PutOutcome::ConditionFailed),
            Err(e) => Err(self.err(e, "conditional put", Some(key.as_str()))),
        }
    }
}

fn no_etag(key: &ObjectKey) -> Error {
    Error::storage("the S3 server answered without an ETag")
        .with_component(COMPONENT)
        .with_operation("conditional put")
        .with_artifact(key.as_str())
        .with_hint("conditional puts need a server that returns ETags and honours If-Match")
}

//! Cleanup of multipart uploads that a killed process left in progress: listed with
//! `ListMultipartUploads` under the sink's prefix, aborted when started before the cutoff.
//!
//! object_store 0.14 aborts an upload by id ([`MultipartStore::abort_multipart`]) but cannot
//! list uploads. The list request is presigned by object_store's own [`Signer`] (the
//! client's credentials, region and addressing style, refreshed tokens included) and sent
//! with `reqwest`, which object_store already uses; no signing code of ours. Neither the
//! presigned URL (it carries the signature and any session token) nor the server's error
//! body (which may echo the request) ever reaches an error or a log: only the status and
//! the S3 error code do.

use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use serde::Deserialize;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::retry::{Jitter, RetryPolicy};
use stoa_backup_core::sink::{CleanupFailure, CleanupReport};

use super::{S3Sink, COMPONENT};

/// How long a presigned list request stays valid: it is sent at once.
const PRESIGNED_FOR: Duration = Duration::from_secs(300);

/// Pages of `ListMultipartUploads` followed at most (1000 uploads each): a bound against a
/// server that keeps saying "truncated".
const MAX_PAGES: usize = 10_000;

/// What a bucket lifecycle rule should say, for hints.
const LIFECYCLE_HINT: &str = "configure the bucket lifecycle rule AbortIncompleteMultipartUpload \
     (see the S3 sink's documentation), which removes the parts of interrupted uploads";

/// A multipart upload neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingUpload {
    /// The full object key in the bucket.
    pub(super) key: String,
    /// The upload's id.
    pub(super) upload_id: String,
    /// When it was started.
    pub(super) initiated: DateTime<Utc>,
}

/// One page of a `ListMultipartUploads` answer (only the fields used).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListPage {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<ListedUpload>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
    initiated: DateTime<Utc>,
}

impl S3Sink {
    /// Aborts the multipart uploads under the prefix started before `older_than`.
    pub(super) async fn cleanup_uploads(&self, older_than: DateTime<Utc>) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        for upload in self.pending_uploads().await? {
            if upload.initiated >= older_than {
                continue;
            }
            match self.abort_upload(&upload).await {
                Ok(true) => report.multipart_uploads_aborted += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(bucket = %self.inner.bucket, key = %upload.key, error = %error, "cannot abort a multipart upload");
                    report.errors.push(CleanupFailure {
                        item: format!("{} (upload {})", upload.key, upload.upload_id),
                        error,
                    });
                }
            }
        }
        if report.multipart_uploads_aborted > 0 {
            tracing::info!(
                bucket = %self.inner.bucket,
                prefix = %self.inner.prefix,
                aborted = report.multipart_uploads_aborted,
                "aborted multipart uploads of interrupted puts"
            );
        }
        Ok(report)
    }

    /// Aborts one upload; `false` if it was gone already (completed or aborted meanwhile).
    async fn abort_upload(&self, upload: &PendingUpload) -> Result<bool> {
        let path = Path::parse(&upload.key).map_err(|e| {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the multipart upload of s3://{}/{} has a key the S3 client cannot address",
                    self.inner.bucket, upload.key
                ),
            )
            .with_component(COMPONENT)
            .with_operation("cleanup")
            .with_artifact(upload.key.as_str())
            .with_source(e)
            .with_hint(LIFECYCLE_HINT)
        })?;
        match self
            .inner
            .store
            .abort_multipart(&path, &upload.upload_id)
            .await
        {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self
                .err(e, "cleanup", None)
                .with_artifact(upload.key.as_str())),
        }
    }

    /// Every multipart upload in progress under the sink's prefix, following the pages.
    pub(super) async fn pending_uploads(&self) -> Result<Vec<PendingUpload>> {
        let prefix = match self.inner.prefix.as_str() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let page = self.list_page(&prefix, markers.as_ref()).await?;
            out.extend(
                page.uploads
                    .into_iter()
                    // The server filters by prefix already; this guards against one that
                    // does not (the sink must never touch what is not under its prefix).
                    .filter(|u| u.key.starts_with(&prefix))
                    .map(|u| PendingUpload {
                        key: u.key,
                        upload_id: u.upload_id,
                        initiated: u.initiated,
                    }),
            );
            if !page.is_truncated {
                return Ok(out);
            }
            let key_marker = page.next_key_marker.filter(|m| !m.is_empty());
            let id_marker = page.next_upload_id_marker.unwrap_or_default();
            match key_marker {
                Some(k) if markers.as_ref() != Some(&(k.clone(), id_marker.clone())) => {
                    markers = Some((k, id_marker))
                }
                _ => {
                    return Err(self.list_error(
                        ErrorKind::Storage,
                        false,
                        "the S3 server said the list of multipart uploads goes on but gave no \
                         new place to go on from",
                        None,
                    ))
                }
            }
        }
        Err(self.list_error(
            ErrorKind::Storage,
            false,
            &format!("more than {MAX_PAGES} pages of multipart uploads"),
            None,
        ))
    }

    /// One `ListMultipartUploads` request, retried like the client's own requests.
    async fn list_page(
        &self,
        prefix: &str,
        markers: Option<&(String, String)>,
    ) -> Result<ListPage> {
        let retry = &self.inner.retry;
        let policy = RetryPolicy {
            attempts: u32::try_from(retry.max_retries)
                .unwrap_or(u32::MAX)
                .saturating_add(1),
            base_delay: retry.initial_backoff,
            max_delay: retry.max_backoff,
            jitter: Jitter::Equal,
        };
        let what = format!("listing multipart uploads in s3://{}", self.inner.bucket);
        policy
            .retry(&what, || self.list_page_once(prefix, markers))
            .await
    }

    async fn list_page_once(
        &self,
        prefix: &str,
        markers: Option<&(String, String)>,
    ) -> Result<ListPage> {
        let mut query: Vec<(&str, &str)> = vec![("uploads", "")];
        if !prefix.is_empty() {
            query.push(("prefix", prefix));
        }
        if let Some((key, id)) = markers {
            query.push(("key-marker", key));
            if !id.is_empty() {
                query.push(("upload-id-marker", id));
            }
        }
        let url = self
            .inner
            .store
            .signed_url_opts(
                reqwest::Method::GET,
                &Path::default(),
                PRESIGNED_FOR,
                &SignedUrlOptions::default().with_query(query),
            )
            .await
            .map_err(|e| {
                self.err(e, "cleanup", None)
                    .with_hint("check the credentials and the region of the S3 sink")
            })?;
        let response = self
            .inner
            .http
            .get(url.as_str())
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Err(self.status_error(status.as_u16(), &body));
        }
        quick_xml::de::from_str::<ListPage>(&body).map_err(|e| {
            self.list_error(
                ErrorKind::Storage,
                false,
                &format!("the answer to ListMultipartUploads cannot be read: {e}"),
                None,
            )
        })
    }

    /// A transport failure; the URL (presigned) is stripped from the cause.
    fn transport_error(&self, e: reqwest::Error) -> Error {
        let timed_out = e.is_timeout();
        let e = e.without_url();
        let what = if timed_out {
            "the S3 server did not answer in time"
        } else {
            "the S3 server could not be reached"
        };
        self.list_error(ErrorKind::Unavailable, true, what, None)
            .with_source(e)
            .with_hint("check the endpoint, the network and the server's health; retrying may help")
    }

    /// An error answer: its status and S3 error code, never its body.
    fn status_error(&self, status: u16, body: &str) -> Error {
        let code = error_code(body).unwrap_or_default();
        let bucket = &self.inner.bucket;
        let (kind, retryable, hint) = match (status, code.as_str()) {
            (501, _) | (_, "NotImplemented") => (
                ErrorKind::Unsupported,
                false,
                format!("this S3 server cannot list multipart uploads; {LIFECYCLE_HINT}"),
            ),
            (403, _) => (
                ErrorKind::PermissionDenied,
                false,
                format!(
                    "allow s3:ListBucketMultipartUploads and s3:AbortMultipartUpload on bucket \
                     {bucket}, or {LIFECYCLE_HINT}"
                ),
            ),
            (401, _) => (
                ErrorKind::Unauthenticated,
                false,
                "check the credentials of the S3 sink".to_string(),
            ),
            (404, _) => (
                ErrorKind::NotFound,
                false,
                format!(
                    "check that the bucket {bucket} exists and the endpoint and region are right"
                ),
            ),
            (s, _) if s >= 500 || s == 429 => (
                ErrorKind::Unavailable,
                true,
                "the server is overloaded or failing; retrying later may help".to_string(),
            ),
            _ => (
                ErrorKind::Storage,
                false,
                "check the endpoint and region of the S3 sink".to_string(),
            ),
        };
        let code = if code.is_empty() {
            String::new()
        } else {
            format!(" {code}")
        };
        self.list_error(
            kind,
            retryable,
            &format!("ListMultipartUploads was answered {status}{code}"),
            Some(status),
        )
        .with_hint(hint)
    }

    fn list_error(
        &self,
        kind: ErrorKind,
        retryable: bool,
        what: &str,
        status: Option<u16>,
    ) -> Error {
        let mut e = Error::new(
            kind,
            format!("{what} (s3://{}/{})", self.inner.bucket, self.inner.prefix),
        )
        .with_retryable(retryable)
        .with_component(COMPONENT)
        .with_operation("cleanup");
        if let Some(s) = status {
            e = e.with_http_status(s);
        }
        e
    }
}

/// The `<Code>` of an S3 error answer, if it has a plain one.
fn error_code(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct S3Error {
        code: String,
    }
    let code = quick_xml::de::from_str::<S3Error>(body).ok()?.code;
    // Only a code-like word: nothing of the request can come back this way.
    (code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_pages_are_read_with_escapes_markers_and_dates() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>stoa-backups</Bucket>
  <KeyMarker></KeyMarker>
  <UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/runs/r2/x</NextKeyMarker>
  <NextUploadIdMarker>id-2</NextUploadIdMarker>
  <Prefix>p/</Prefix>
  <MaxUploads>2</MaxUploads>
  <IsTruncated>true</IsTruncated>
  <Upload>
    <Key>p/runs/r1/a &amp; &lt;b&gt;.json</Key>
    <UploadId>id-1</UploadId>
    <Initiator><ID>x</ID><DisplayName>y</DisplayName></Initiator>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2026-03-01T10:20:30.000Z</Initiated>
  </Upload>
  <Upload>
    <Key>p/runs/r2/x</Key>
    <UploadId>id-2</UploadId>
    <Initiated>2026-03-02T00:00:00Z</Initiated>
  </Upload>
</ListMultipartUploadsResult>"#;
        let page: ListPage = quick_xml::de::from_str(xml).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("p/runs/r2/x"));
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("id-2"));
        assert_eq!(page.uploads.len(), 2);
        assert_eq!(page.uploads[0].key, "p/runs/r1/a & <b>.json");
        assert_eq!(page.uploads[0].upload_id, "id-1");
        assert_eq!(
            page.uploads[0].initiated,
            "2026-03-01T10:20:30Z".parse::<DateTime<Utc>>().unwrap()
        );

        let empty = r#"<ListMultipartUploadsResult><Bucket>b</Bucket>
            <IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"#;
        let page: ListPage = quick_xml::de::from_str(empty).unwrap();
        assert!(!page.is_truncated && page.uploads.is_empty());
    }

    #[test]
    fn only_a_plain_error_code_is_taken_from_an_error_answer() {
        let body = "<Error><Code>NotImplemented</Code><Message>A header you provided implies \
                    functionality that is not implemented</Message></Error>";
        assert_eq!(error_code(body).as_deref(), Some("NotImplemented"));
        let echo = "<Error><Code>X-Amz-Security-Token=secret</Code></Error>";
        assert_eq!(error_code(echo), None);
        assert_eq!(error_code("not xml"), None);
    }
}

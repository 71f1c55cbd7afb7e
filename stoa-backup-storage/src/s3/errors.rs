//! How `object_store` errors map to [`ErrorKind`]s, with the bucket, key and a hint.

use stoa_backup_core::error::{Error, ErrorKind};

use super::COMPONENT;

/// Maps an `object_store` error to ours, naming the bucket and object key (never
/// credentials: object_store's messages carry the request URL and the server's answer).
pub(super) fn map_error(
    bucket: &str,
    full_key: &str,
    e: object_store::Error,
    op: &str,
    artifact: Option<&str>,
) -> Error {
    use object_store::Error as E;
    let target = format!("s3://{bucket}/{full_key}");
    let (kind, retryable, what, hint): (ErrorKind, bool, String, String) = match &e {
        E::NotFound { .. } => (
            ErrorKind::NotFound,
            false,
            format!("no object at {target}"),
            "list the catalog to see which runs and artifacts exist".into(),
        ),
        E::PermissionDenied { .. } => (
            ErrorKind::PermissionDenied,
            false,
            format!("access to {target} was denied (403)"),
            format!(
                "check the credentials (access key, secret, session token or role) and that the \
                 bucket policy and any KMS key allow s3:PutObject, s3:GetObject, s3:ListBucket, \
                 s3:DeleteObject and s3:AbortMultipartUpload on bucket {bucket}"
            ),
        ),
        E::Unauthenticated { .. } => (
            ErrorKind::Unauthenticated,
            false,
            format!("the request for {target} was not authenticated (401)"),
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the web identity (IRSA) role or \
             the instance profile"
                .into(),
        ),
        E::Precondition { .. } | E::AlreadyExists { .. } | E::NotModified { .. } => (
            ErrorKind::Conflict,
            false,
            format!("a concurrent change to {target} got in the way"),
            "run the operation again".into(),
        ),
        E::NotSupported { .. } | E::NotImplemented { .. } => (
            ErrorKind::Unsupported,
            false,
            format!("the S3 server does not support this operation on {target}"),
            "use an S3 implementation with multipart uploads and ListObjectsV2".into(),
        ),
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => (
            ErrorKind::Config,
            false,
            format!("invalid request for {target}"),
            "check the sink's configuration".into(),
        ),
        E::JoinError { .. } => (
            ErrorKind::Internal,
            false,
            format!("an upload task for {target} failed"),
            "report this as a bug in stoa-backup".into(),
        ),
        _ => classify_generic(&e, &target),
    };
    let mut err = Error::new(kind, what)
        .with_retryable(retryable)
        .with_component(COMPONENT)
        .with_operation(op)
        .with_hint(hint)
        .with_source(e);
    if let Some(a) = artifact {
        err = err.with_artifact(a);
    }
    err
}

/// Sorts `Generic` errors (retries exhausted, transport failures, credential providers).
fn classify_generic(e: &object_store::Error, target: &str) -> (ErrorKind, bool, String, String) {
    // Transport errors (connect, timeout, reset) keep their kind through the source chain.
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            if matches!(
                h.kind(),
                K::Connect | K::Request | K::Timeout | K::Interrupted
            ) {
                return (
                    ErrorKind::Unavailable,
                    true,
                    format!("the S3 server could not be reached for {target}"),
                    "check the endpoint, the network and the server's health; retrying may help"
                        .into(),
                );
            }
        }
        src = s.source();
    }
    let text = e.to_string();
    let status = status_in(&text);
    match status {
        Some(s) if s >= 500 || s == 429 => (
            ErrorKind::Unavailable,
            true,
            format!("the S3 server kept failing ({s}) for {target}, retries exhausted"),
            "the server is overloaded or failing; retrying later may help".into(),
        ),
        Some(400)
            if [
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "ExpiredToken",
                "InvalidToken",
            ]
            .iter()
            .any(|c| text.contains(c)) =>
        {
            (
                ErrorKind::Unauthenticated,
                false,
                format!("the credentials were refused for {target}"),
                "check the access key, secret key and session token".into(),
            )
        }
        // The body's x-amz-checksum-sha256 or x-amz-content-sha256 did not match what arrived.
        Some(400)
            if ["BadDigest", "XAmzContentSHA256Mismatch"]
                .iter()
                .any(|c| text.contains(c)) =>
        {
            (
                ErrorKind::Integrity,
                true,
                format!(
                    "the S3 server refused the upload to {target}: the bytes it received do \
                     not match the checksum the sink sent"
                ),
                "the body was changed on the way (network, proxy, middlebox); retrying may \
                 help. If this store refuses every checksummed upload, turn off \
                 write_checksums on the S3 sink"
                    .into(),
            )
        }
        _ if text.contains("SlowDown") || text.contains("Throttl") => (
            ErrorKind::Unavailable,
            true,
            format!("the S3 server throttled requests for {target}"),
            "lower the concurrency or retry later".into(),
        ),
        _ if status.is_none() && text.to_ascii_lowercase().contains("credential") => (
            ErrorKind::Unauthenticated,
            false,
            format!("no usable credentials for {target}"),
            "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, configure web identity (IRSA), \
             or give the credentials explicitly"
                .into(),
        ),
        _ => (
            ErrorKind::Storage,
            false,
            format!("the S3 request for {target} failed"),
            "see the cause; check the bucket, endpoint and region".into(),
        ),
    }
}

/// The HTTP status in object_store's "non-2xx status code: 503 ..." messages.
fn status_in(text: &str) -> Option<u16> {
    let marker = "status code: ";
    let i = text.find(marker)? + marker.len();
    text[i..].get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_errors_to_kinds() {
        let src = || -> Box<dyn std::error::Error + Send + Sync> { "x".into() };
        let e = map_error(
            "b",
            "p/k",
            object_store::Error::PermissionDenied {
                path: "p/k".into(),
                source: src(),
            },
            "put",
            Some("k"),
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("s3://b/p/k"), "{e}");
        assert_eq!(e.artifact(), Some("k"));
        assert_eq!(e.component(), Some(COMPONENT));
        let e = map_error(
            "b",
            "k",
            object_store::Error::Generic {
                store: "S3",
                source: "Error performing PUT http://h/b/k in 1s, after 3 retries - Server \
                         returned non-2xx status code: 503 Service Unavailable: <Error/>"
                    .into(),
            },
            "put",
            None,
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        let e = map_error(
            "b",
            "k",
            object_store::Error::Generic {
                store: "S3",
                source: "Error performing PUT http://h/b/k in 1s - Server returned non-2xx \
                         status code: 400 Bad Request: <Error><Code>BadDigest</Code></Error>"
                    .into(),
            },
            "put",
            Some("k"),
        );
        assert_eq!(e.kind(), ErrorKind::Integrity);
        assert!(e.is_retryable());
        assert!(e.hint().unwrap().contains("write_checksums"), "{e}");
        assert_eq!(status_in("status code: 404 Not Found"), Some(404));
        assert_eq!(status_in("nothing"), None);
    }
}

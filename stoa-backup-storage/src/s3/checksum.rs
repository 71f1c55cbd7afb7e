//! `x-amz-checksum-sha256` on uploads, and when the sink may say the store checked them.
//!
//! object_store computes the header from the exact payload of every `PutObject` and
//! `UploadPart` (and asks for SHA-256 parts on `CreateMultipartUpload`). It keeps the
//! checksum each `UploadPart` answer carries and lists it with its part in
//! `CompleteMultipartUpload`. A [`PutResult::store_checked`](stoa_backup_core::sink::PutResult)
//! claim needs more than sending the header: the store must be one that verifies it (AWS
//! S3, or one the caller vouches for), and the answer to every upload request must echo the
//! very checksum sent, so a store or proxy that ignored the header never earns the claim.
//! [`EchoConnector`], wrapped around object_store's own HTTP client, checks the answers and
//! marks the final one of a put ([`ChecksumEchoed`]), which object_store hands back in
//! [`object_store::PutResult::extensions`].

use async_trait::async_trait;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use serde::Deserialize;

/// The header object_store sends with every upload body and S3 answers with.
const SHA256_HEADER: &str = "x-amz-checksum-sha256";

/// In the extensions of a successful answer: the checksums of the stored bytes were echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChecksumEchoed {
    /// A `PutObject` (or `UploadPart`) answer echoed the checksum of its body.
    Body,
    /// A `CompleteMultipartUpload` listed this many parts, each with the checksum its
    /// `UploadPart` answer echoed.
    AllParts(u64),
}

/// What the sink does with `x-amz-checksum-sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checksums {
    /// Send the header with every upload.
    pub(super) send: bool,
    /// The store is known to reject a body that does not match it.
    pub(super) store_verifies: bool,
}

impl Checksums {
    /// Whether echoed checksums make a `store_checked` claim.
    pub(super) fn may_claim(self) -> bool {
        self.send && self.store_verifies
    }

    /// The claim for a single `PutObject` whose answer echoed its checksum.
    pub(super) fn single_put_claim() -> String {
        "S3 verified the x-amz-checksum-sha256 (SHA-256 of the body the sink sent) of the \
         single PutObject and echoed it back"
            .to_string()
    }

    /// The claim for a multipart upload whose every part's answer echoed its checksum.
    pub(super) fn multipart_claim(parts: u64) -> String {
        format!(
            "S3 verified the x-amz-checksum-sha256 (SHA-256 of the body the sink sent) of every \
             uploaded part ({parts} parts) and echoed each back"
        )
    }
}

/// Whether `endpoint` is AWS S3's own (none configured, or a host under `amazonaws.com`),
/// whose documented behaviour is to reject an upload whose body does not match its
/// `x-amz-checksum-sha256` (`BadDigest`).
pub(super) fn is_aws_endpoint(endpoint: Option<&str>) -> bool {
    let Some(url) = endpoint else { return true };
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.starts_with('[') {
        return false; // an IP address
    }
    let host = authority
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

/// How many parts a `CompleteMultipartUpload` body lists, if it lists at least one and each
/// with a `ChecksumSHA256`. object_store takes those from the `UploadPart` answers, which
/// [`EchoService`] stripped of any checksum that differs from the one sent; so each is the
/// echo of its part's checksum. A body this cannot read counts as not echoed: no claim
/// rather than a wrong one.
fn parts_all_echoed(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Complete {
        #[serde(rename = "Part", default)]
        parts: Vec<Part>,
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "ChecksumSHA256")]
        checksum: Option<String>,
    }
    let complete: Complete = quick_xml::de::from_reader(body).ok()?;
    let echoed = complete
        .parts
        .iter()
        .all(|p| p.checksum.as_deref().is_some_and(|c| !c.is_empty()));
    (echoed && !complete.parts.is_empty()).then_some(complete.parts.len() as u64)
}

/// Whether `req` is a `CompleteMultipartUpload` (`POST ?uploadId=…`).
fn is_complete_multipart(req: &HttpRequest) -> bool {
    req.method().as_str() == "POST"
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("uploadId=")))
}

/// object_store's reqwest connector, answers inspected by [`EchoService`].
#[derive(Debug, Default)]
pub(super) struct EchoConnector;

impl HttpConnector for EchoConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(EchoService { inner }))
    }
}

/// Marks successful answers that echo the checksums of what was stored
/// ([`ChecksumEchoed`]), and removes a differing checksum from an answer, so object_store
/// does not list it with the part either.
#[derive(Debug)]
struct EchoService {
    inner: HttpClient,
}

#[async_trait]
impl HttpService for EchoService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let sent = req.headers().get(SHA256_HEADER).cloned();
        let parts = if is_complete_multipart(&req) {
            req.body().as_bytes().and_then(|b| parts_all_echoed(b))
        } else {
            None
        };
        let mut resp = self.inner.execute(req).await?;
        let ok = resp.status().is_success();
        if let Some(sent) = sent {
            if ok && resp.headers().get(SHA256_HEADER) == Some(&sent) {
                resp.extensions_mut().insert(ChecksumEchoed::Body);
            } else {
                resp.headers_mut().remove(SHA256_HEADER);
            }
        } else if let (true, Some(n)) = (ok, parts) {
            resp.extensions_mut().insert(ChecksumEchoed::AllParts(n));
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use object_store::client::HttpResponseBody;

    #[test]
    fn aws_endpoints_are_recognised() {
        for aws in [
            None,
            Some("https://s3.eu-west-1.amazonaws.com"),
            Some("https://S3.dualstack.us-east-1.AMAZONAWS.com/"),
            Some("https://stoa-backups.s3.us-east-1.amazonaws.com:443/x"),
            Some("https://bucket.vpce-1a2b.s3.us-east-1.vpce.amazonaws.com"),
            Some("https://s3.cn-north-1.amazonaws.com.cn"),
        ] {
            assert!(is_aws_endpoint(aws), "{aws:?}");
        }
        for other in [
            "http://127.0.0.1:9000",
            "https://minio.example:9000",
            "https://amazonaws.com.evil.example",
            "https://s3.amazonaws.com.evil.example",
            "https://notamazonaws.com",
            "http://[::1]:9000",
        ] {
            assert!(!is_aws_endpoint(Some(other)), "{other}");
        }
    }

    /// A completion body as object_store 0.14 writes it.
    fn complete_body(checksums: &[Option<&str>]) -> String {
        let parts: String = checksums
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c = c.map_or(String::new(), |c| {
                    format!("<ChecksumSHA256>{c}</ChecksumSHA256>")
                });
                format!(
                    "<Part><ETag>\"e{i}\"</ETag><PartNumber>{}</PartNumber>{c}</Part>",
                    i + 1
                )
            })
            .collect();
        format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>")
    }

    #[test]
    fn completions_count_as_echoed_only_with_a_checksum_on_every_part() {
        let n = |c: &[Option<&str>]| parts_all_echoed(complete_body(c).as_bytes());
        assert_eq!(n(&[Some("a="), Some("b="), Some("c=")]), Some(3));
        assert_eq!(n(&[Some("a="), None, Some("c=")]), None);
        assert_eq!(n(&[Some("a="), Some("")]), None);
        assert_eq!(n(&[None]), None);
        assert_eq!(n(&[]), None);
        assert_eq!(parts_all_echoed(b"not xml <"), None);
    }

    /// Answers every request with a canned status and checksum header.
    #[derive(Debug)]
    struct Canned {
        status: u16,
        echo: Option<&'static str>,
    }

    #[async_trait]
    impl HttpService for Canned {
        async fn call(&self, _req: HttpRequest) -> Result<HttpResponse, HttpError> {
            let mut resp = HttpResponse::new(HttpResponseBody::from(Bytes::new()));
            *resp.status_mut() = reqwest::StatusCode::from_u16(self.status).unwrap();
            if let Some(e) = self.echo {
                resp.headers_mut().insert(SHA256_HEADER, e.parse().unwrap());
            }
            Ok(resp)
        }
    }

    async fn call(status: u16, echo: Option<&'static str>, req: HttpRequest) -> HttpResponse {
        let svc = EchoService {
            inner: HttpClient::new(Canned { status, echo }),
        };
        svc.call(req).await.unwrap()
    }

    async fn through_echo(
        status: u16,
        sent: Option<&str>,
        echo: Option<&'static str>,
    ) -> HttpResponse {
        let mut req = HttpRequest::new(Bytes::from_static(b"body").into());
        *req.method_mut() = reqwest::Method::PUT;
        if let Some(s) = sent {
            req.headers_mut().insert(SHA256_HEADER, s.parse().unwrap());
        }
        call(status, echo, req).await
    }

    #[tokio::test]
    async fn only_an_exact_echo_on_success_is_marked() {
        let r = through_echo(200, Some("abc="), Some("abc=")).await;
        assert_eq!(
            r.extensions().get::<ChecksumEchoed>(),
            Some(&ChecksumEchoed::Body)
        );
        assert_eq!(r.headers().get(SHA256_HEADER).unwrap(), "abc=");

        // A different checksum in the answer is dropped, not recorded for a part.
        let r = through_echo(200, Some("abc="), Some("xyz=")).await;
        assert!(r.extensions().get::<ChecksumEchoed>().is_none());
        assert!(r.headers().get(SHA256_HEADER).is_none());

        for (status, sent, echo) in [
            (200, Some("abc="), None),         // the store ignored the header
            (200, None, Some("abc=")),         // nothing was sent: nothing to echo
            (500, Some("abc="), Some("abc=")), // a failed request proves nothing
        ] {
            let r = through_echo(status, sent, echo).await;
            assert!(
                r.extensions().get::<ChecksumEchoed>().is_none(),
                "{status} {sent:?} {echo:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_completion_listing_every_part_with_its_checksum_is_marked() {
        let complete = |query: &str, checksums: &[Option<&str>]| {
            let mut req = HttpRequest::new(complete_body(checksums).into());
            *req.method_mut() = reqwest::Method::POST;
            *req.uri_mut() = format!("http://127.0.0.1:9/bucket/key?{query}")
                .parse()
                .unwrap();
            req
        };
        let r = call(
            200,
            None,
            complete("uploadId=u1", &[Some("a="), Some("b=")]),
        )
        .await;
        assert_eq!(
            r.extensions().get::<ChecksumEchoed>(),
            Some(&ChecksumEchoed::AllParts(2))
        );
        for (status, query, checksums) in [
            (200, "uploadId=u1", &[Some("a="), None][..]),
            (500, "uploadId=u1", &[Some("a=")][..]),
            (200, "delete", &[Some("a=")][..]),
        ] {
            let r = call(status, None, complete(query, checksums)).await;
            assert!(
                r.extensions().get::<ChecksumEchoed>().is_none(),
                "{status} {query} {checksums:?}"
            );
        }
    }
}

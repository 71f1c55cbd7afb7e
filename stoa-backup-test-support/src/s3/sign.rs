//! AWS Signature V4 signed raw requests, for what object_store does not offer or must not
//! be trusted with (creating buckets, `ListMultipartUploads`, probing a server).

use bytes::Bytes;
use hyper::Method;
use sha2::{Digest, Sha256};

/// Sends one AWS Signature V4 signed, path-style request and returns its status and body.
///
/// # Panics
/// If the server cannot be reached.
#[allow(clippy::too_many_arguments)]
pub async fn signed_request(
    method: Method,
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret_key: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Bytes,
) -> (reqwest::StatusCode, String) {
    let (status, _, text) = signed_request_with_headers(
        method,
        endpoint,
        region,
        access_key,
        secret_key,
        path,
        query,
        &[],
        body,
    )
    .await;
    (status, text)
}

/// [`signed_request`] with more headers (lowercase names, signed too), e.g.
/// `x-amz-checksum-sha256`; also returns the answer's headers.
///
/// # Panics
/// If the server cannot be reached.
#[allow(clippy::too_many_arguments)]
pub async fn signed_request_with_headers(
    method: Method,
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret_key: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: Bytes,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let host = endpoint
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(endpoint)
        .trim_end_matches('/')
        .to_string();
    let now = chrono::Utc::now();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = now.format("%Y%m%d").to_string();
    let payload_hash = hex(&Sha256::digest(&body));
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_uri = uri_encode(path, false);
    let mut signed: Vec<(&str, &str)> = vec![
        ("host", &host),
        ("x-amz-content-sha256", &payload_hash),
        ("x-amz-date", &amz_date),
    ];
    signed.extend_from_slice(headers);
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = signed.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"s3");
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    );
    let mut url = format!("{}{canonical_uri}", endpoint.trim_end_matches('/'));
    if !canonical_query.is_empty() {
        url.push('?');
        url.push_str(&canonical_query);
    }
    let client = reqwest::Client::new();
    let mut req = client
        .request(
            reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("valid method"),
            &url,
        )
        .header("x-amz-date", &amz_date)
        .header("x-amz-content-sha256", &payload_hash)
        .header("authorization", authorization);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot reach the S3 server at {endpoint}: {e}"));
    let status = resp.status();
    let answer_headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (status, answer_headers, text)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = Sha256::new();
    inner.update(&ipad);
    inner.update(data);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(&opad);
    outer.update(inner);
    outer.finalize().to_vec()
}

/// AWS's URI encoding: unreserved characters kept, everything else `%XX`; `/` kept in paths.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

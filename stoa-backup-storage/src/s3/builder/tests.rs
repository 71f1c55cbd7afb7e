//! The builder's unit tests: validation, secrets, the AWS environment, checksum defaults.

use super::*;

use std::collections::HashMap;

use stoa_backup_core::error::ErrorKind;
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::sink::Sink;

fn builder() -> S3SinkBuilder {
    S3Sink::builder("stoa-backups").region("eu-west-1")
}

/// A builder from the given variables only (the process environment is not touched).
fn from_vars(vars: &[(&str, &str)]) -> S3SinkBuilder {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    S3SinkBuilder::from_env_with("stoa-backups", move |name| vars.get(name).cloned())
}

#[test]
fn validates_configuration_purely() {
    builder().validate().unwrap();
    for bad in ["", "ab", "Upper", "-x-", "a_b", &"x".repeat(64)] {
        let e = S3Sink::builder(bad).validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}");
    }
    assert!(builder().prefix("a/../b").validate().is_err());
    assert!(builder().prefix("/a/b/").validate().is_ok());
    assert!(builder()
        .endpoint("http://127.0.0.1:9000")
        .validate()
        .is_err());
    assert!(builder()
        .endpoint("http://127.0.0.1:9000")
        .allow_http(true)
        .validate()
        .is_ok());
    assert!(builder().endpoint("ftp://x").validate().is_err());
    assert!(builder().endpoint("https://u:p@x").validate().is_err());
    assert!(builder().part_size(1 << 20).validate().is_err());
    assert!(builder().max_parts_in_flight(0).validate().is_err());
    assert!(builder().storage_class("standard").validate().is_err());
    assert!(builder()
        .encryption(S3Encryption::Kms {
            key_id: " ".into(),
            bucket_key: None
        })
        .validate()
        .is_err());
    assert!(builder()
        .credentials(S3Credentials::new("AKIA", ""))
        .validate()
        .is_err());
}

#[test]
fn secrets_never_reach_debug_or_describe() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let b = builder()
        .endpoint("https://minio.example:9000")
        .credentials(S3Credentials::new("AKIDEXAMPLE", secret).with_session_token("tok-secret"))
        .encryption(S3Encryption::S3Managed)
        .storage_class("STANDARD_IA");
    let dbg = format!("{b:?}");
    assert!(
        !dbg.contains(secret) && !dbg.contains("tok-secret"),
        "{dbg}"
    );
    assert!(dbg.contains("AKIDEXAMPLE"));
    let sink = b.prefix("stoa/prod").build().unwrap();
    for s in [format!("{sink:?}"), sink.describe()] {
        assert!(!s.contains(secret) && !s.contains("tok-secret"), "{s}");
    }
    assert_eq!(
        sink.describe(),
        "s3://stoa-backups/stoa/prod at https://minio.example:9000"
    );
    assert_eq!(
        sink.object_key(&ObjectKey::new("runs/x/m.json").unwrap()),
        "stoa/prod/runs/x/m.json"
    );
    assert_eq!(sink.max_buffered_bytes(), 5 * DEFAULT_PART_SIZE as u64);
}

#[test]
fn from_env_reads_the_standard_aws_variables() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let b = from_vars(&[
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", "tok-secret"),
        ("AWS_REGION", "eu-west-3"),
        ("AWS_DEFAULT_REGION", "us-west-2"),
        ("AWS_ENDPOINT_URL_S3", "https://s3.minio.example:9000"),
        ("AWS_ENDPOINT_URL", "https://all.services.example"),
    ]);
    let c = b.credentials.as_ref().expect("static credentials");
    assert_eq!(c.access_key_id(), "AKIDEXAMPLE");
    assert_eq!(c.secret_access_key.0, secret);
    assert_eq!(
        c.session_token.as_ref().map(|t| t.0.as_str()),
        Some("tok-secret")
    );
    assert_eq!(b.region.as_deref(), Some("eu-west-3"));
    assert_eq!(b.endpoint.as_deref(), Some("https://s3.minio.example:9000"));
    assert!(b.credential_env.is_empty());
    let dbg = format!("{b:?}");
    assert!(
        !dbg.contains(secret) && !dbg.contains("tok-secret"),
        "{dbg}"
    );
    let sink = b.build().unwrap();
    assert_eq!(
        sink.describe(),
        "s3://stoa-backups at https://s3.minio.example:9000"
    );

    // The fall-backs, and empty variables counting as unset.
    let b = from_vars(&[
        ("AWS_REGION", ""),
        ("AWS_DEFAULT_REGION", "us-west-2"),
        ("AWS_ENDPOINT_URL_S3", " "),
        ("AWS_ENDPOINT_URL", "https://all.services.example"),
    ]);
    assert_eq!(b.region.as_deref(), Some("us-west-2"));
    assert_eq!(b.endpoint.as_deref(), Some("https://all.services.example"));
    assert!(b.credentials.is_none());

    // Settings made afterwards win over the environment.
    let b = from_vars(&[("AWS_REGION", "eu-west-3")])
        .region("ap-south-1")
        .credentials(S3Credentials::new("AKIDOTHER", "other-secret"));
    assert_eq!(b.region.as_deref(), Some("ap-south-1"));
    assert_eq!(b.credentials.as_ref().unwrap().access_key_id(), "AKIDOTHER");

    // Nothing set: nothing configured, like S3SinkBuilder::new.
    let b = from_vars(&[]);
    assert!(b.region.is_none() && b.endpoint.is_none() && b.credentials.is_none());
    assert!(b.credential_env.is_empty());
}

#[test]
fn from_env_validates_what_it_read() {
    // Half a key pair is refused, not silently replaced by other credentials.
    let e = from_vars(&[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")])
        .validate()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.hint().unwrap_or("").contains("AWS_SECRET_ACCESS_KEY"),
        "{e:?}"
    );
    // A plain-http endpoint from the environment needs allow_http like an explicit one.
    let b = from_vars(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")]);
    assert!(b.clone().validate().is_err());
    assert!(b.clone().allow_http(true).validate().is_ok());
    // Loopback-only http: local servers pass, anything else still needs https.
    assert!(b.allow_loopback_http(true).validate().is_ok());
    for ok in [
        "http://localhost:5000",
        "http://[::1]:9000/x",
        "http://127.8.0.1",
    ] {
        let b = S3SinkBuilder::new("stoa-backups")
            .endpoint(ok)
            .allow_loopback_http(true);
        b.validate().unwrap_or_else(|e| panic!("{ok}: {e:?}"));
    }
    for remote in [
        "http://minio.example:9000",
        "http://10.0.0.1",
        "http://127.0.0.1.nip.io",
    ] {
        let b = S3SinkBuilder::new("stoa-backups")
            .endpoint(remote)
            .allow_loopback_http(true);
        let e = b.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{remote}");
        // Refused for its plain http, not for something else in the configuration.
        assert!(e.message().contains("plain http"), "{remote}: {e}");
    }
}

#[test]
fn from_env_hands_web_identity_and_container_credentials_to_the_client() {
    let b = from_vars(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks/token"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/stoa-backup"),
        ("AWS_ROLE_SESSION_NAME", "stoa"),
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/x",
        ),
        ("AWS_REGION", "eu-west-1"),
    ]);
    let store = b.store_builder().unwrap();
    for (key, value) in [
        (
            AmazonS3ConfigKey::WebIdentityTokenFile,
            "/var/run/secrets/eks/token",
        ),
        (
            AmazonS3ConfigKey::RoleArn,
            "arn:aws:iam::123456789012:role/stoa-backup",
        ),
        (AmazonS3ConfigKey::RoleSessionName, "stoa"),
        (
            AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
            "/v2/credentials/x",
        ),
        (AmazonS3ConfigKey::Region, "eu-west-1"),
    ] {
        assert_eq!(
            store.get_config_value(&key).as_deref(),
            Some(value),
            "{key:?}"
        );
    }
    // Every variable handed over names a key object_store knows.
    let all: Vec<(&str, &str)> = CREDENTIAL_PROVIDER_VARS.iter().map(|&n| (n, "x")).collect();
    assert_eq!(
        from_vars(&all).credential_env.len(),
        CREDENTIAL_PROVIDER_VARS.len()
    );
    from_vars(&all).store_builder().unwrap();
}

#[test]
fn checksums_are_sent_by_default_and_trusted_on_aws_only() {
    let on = |b: S3SinkBuilder| b.checksums();
    // AWS itself: sent and trusted.
    let c = on(builder());
    assert!(c.send && c.store_verifies && c.may_claim());
    let c = on(builder().endpoint("https://s3.eu-west-1.amazonaws.com"));
    assert!(c.may_claim());
    // Another store: sent, but not trusted unless the caller vouches for it.
    let minio = || builder().endpoint("https://minio.example:9000");
    let c = on(minio());
    assert!(c.send && !c.store_verifies && !c.may_claim());
    assert!(on(minio().store_verifies_checksums(true)).may_claim());
    assert!(!on(builder().store_verifies_checksums(false)).may_claim());
    // Off: nothing sent, nothing claimed, whatever the trust.
    let c = on(minio()
        .store_verifies_checksums(true)
        .write_checksums(false));
    assert!(!c.send && !c.may_claim());

    // What object_store is told.
    let algo = |b: S3SinkBuilder| {
        b.store_builder()
            .unwrap()
            .get_config_value(&AmazonS3ConfigKey::Checksum)
    };
    assert_eq!(algo(builder()).as_deref(), Some("sha256"));
    assert_eq!(algo(minio()).as_deref(), Some("sha256"));
    assert_eq!(algo(builder().write_checksums(false)), None);
}

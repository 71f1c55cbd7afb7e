//! Unit tests of `client`.

use super::*;

#[test]
fn debug_hides_credentials() {
    let a = VaultAuth::approle("rid-123", "sid-456");
    let d = format!("{a:?}");
    assert!(!d.contains("rid-123") && !d.contains("sid-456"), "{d}");
    let t = VaultAuth::token("hvs.SECRET");
    let c = VaultConnection::new("http://127.0.0.1:8200", t).unwrap();
    assert!(!format!("{c:?}").contains("hvs.SECRET"));
}

#[test]
fn env_reads_the_cli_variables_and_names_what_is_missing() {
    let c = VaultConnection::from_lookup(crate::test_env(&[
        ("VAULT_ADDR", "https://vault.stoa.svc:8200"),
        ("VAULT_TOKEN", "hvs.ENVSECRET"),
        ("VAULT_NAMESPACE", "team-a"),
        ("BAO_ADDR", "https://ignored.example"),
    ]))
    .unwrap();
    assert_eq!(c.address().as_str(), "https://vault.stoa.svc:8200/");
    assert_eq!(c.namespace_name(), Some("team-a/"));
    assert!(matches!(&c.auth, VaultAuth::Token(t) if t == "hvs.ENVSECRET"));
    assert!(!format!("{c:?}").contains("ENVSECRET"));

    let bao = VaultConnection::from_lookup(crate::test_env(&[
        ("BAO_ADDR", "http://openbao:8200"),
        ("BAO_TOKEN", "s.bao"),
    ]))
    .unwrap();
    assert_eq!(bao.address().as_str(), "http://openbao:8200/");
    assert_eq!(bao.namespace_name(), None);

    let err = VaultConnection::from_lookup(crate::test_env(&[
        ("VAULT_ADDR", "https://vault.stoa.svc:8200"),
        ("VAULT_TOKEN", "  "),
    ]))
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.context_value("variable"), Some("VAULT_TOKEN"));
    assert!(err.to_string().contains("VAULT_TOKEN"), "{err}");
    let err = VaultConnection::from_lookup(crate::test_env(&[("VAULT_TOKEN", "t")])).unwrap_err();
    assert_eq!(err.context_value("variable"), Some("VAULT_ADDR"));
    let err = VaultConnection::from_lookup(crate::test_env(&[
        ("VAULT_ADDR", "ftp://vault"),
        ("VAULT_TOKEN", "hvs.ENVSECRET"),
    ]))
    .unwrap_err();
    assert_eq!(err.context_value("variable"), Some("VAULT_ADDR"));
    assert!(!format!("{err:?}").contains("ENVSECRET"));
}

#[test]
fn urls_escape_segments() {
    let c = VaultClient::new(
        VaultConnection::new("http://127.0.0.1:8200/", VaultAuth::token("t")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        c.url(&["secret/", "metadata", "a b/c"]).as_str(),
        "http://127.0.0.1:8200/v1/secret/metadata/a%20b/c"
    );
}

#[test]
fn maps_error_bodies() {
    let e = vault_error(
        &Answer::new(
            StatusCode::FORBIDDEN,
            &b"{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}"[..],
        ),
        "x",
    );
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(
        e.message().ends_with("permission denied"),
        "{}",
        e.message()
    );
    let e = vault_error(
        &Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"errors":["Vault is sealed"]}"#,
        ),
        "x",
    );
    assert!(e.hint().unwrap().contains("unseal"));
    assert_eq!(e.http_status(), Some(503));
}

#[test]
fn health_states_map_to_clear_errors() {
    let h = |status| VaultHealth {
        status,
        initialized: true,
        sealed: status == 503,
        standby: status == 429,
        performance_standby: false,
        version: "1.17.2".into(),
        cluster_name: None,
        cluster_id: None,
    };
    assert!(h(200).require_active("x").is_ok());
    assert!(h(503)
        .require_active("x")
        .unwrap_err()
        .message()
        .contains("sealed"));
    assert!(h(429)
        .require_active("x")
        .unwrap_err()
        .message()
        .contains("standby"));
    assert!(h(501)
        .require_active("x")
        .unwrap_err()
        .message()
        .contains("not initialised"));
}

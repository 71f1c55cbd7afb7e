//! Drills: PostgreSQL and Keycloak restored into scratch targets on the production systems
//! themselves (a scratch database on the real server, a scratch realm in the fake Keycloak),
//! checked, then removed — also when a check fails; production is never touched.

use std::sync::Arc;

use stoa_backup::core::recovery::{CheckOutcome, Checklist, FnCheck, Recovery, Verdict};
use stoa_backup::core::{ErrorKind, Keyring, Pipeline, Sink};
use stoa_backup::prelude::*;
use stoa_backup::providers::keycloak::{
    KeycloakAuth, KeycloakConnection, KeycloakSource, ScratchRealm,
};
use stoa_backup::providers::postgres::{
    PostgresRestorer, PostgresSource, RestoreTarget, ScratchDatabase,
};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::keycloak_fake::{fixture_realm, FakeKeycloak};

use crate::postgres::backup_restore::{
    database_exists, fingerprint, fresh_target, server, stoa_database,
};

fn keycloak(kc: &FakeKeycloak) -> KeycloakConnection {
    let (client_id, client_secret) = kc.client_credentials();
    KeycloakConnection::new(
        &kc.url(),
        KeycloakAuth::ClientCredentials {
            client_id,
            client_secret,
        },
    )
    .unwrap()
}

/// A drill of both components with one check that passes or fails as told.
fn drill(
    sink: Arc<dyn Sink>,
    keyring: &Keyring,
    database: &ScratchDatabase,
    realm: &ScratchRealm,
    kc: Arc<FakeKeycloak>,
    source_db: String,
    pass: bool,
) -> Recovery {
    let (scratch_db, scratch_realm) = (database.name().to_string(), realm.realm().to_string());
    Recovery::stoa()
        .sink(sink)
        .keyring(keyring.clone())
        .step(database.step(PostgresRestorer::new(
            server(),
            RestoreTarget::NewDatabase {
                name: "stoa".into(),
                swap: true,
            },
        )))
        .step(realm.step().unwrap())
        .checks(Checklist::new().check(FnCheck::new(
            "scratch targets equal production",
            move |_| {
                let (source_db, scratch_db, scratch_realm, kc) = (
                    source_db.clone(),
                    scratch_db.clone(),
                    scratch_realm.clone(),
                    kc.clone(),
                );
                async move {
                    let rows = fingerprint(&source_db).await == fingerprint(&scratch_db).await;
                    let users = kc.user_count(&scratch_realm) == kc.user_count("stoa");
                    Ok(if rows && users && pass {
                        CheckOutcome::passed("rows and users equal")
                    } else {
                        CheckOutcome::failed(format!(
                            "rows equal: {rows}, users equal: {users}, told to pass: {pass}"
                        ))
                    })
                }
            },
        )))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_drill_leaves_no_scratch_database_or_realm_behind_also_when_a_check_fails() {
    let db = stoa_database("drill_src").await;
    let kc = Arc::new(FakeKeycloak::start_empty().await);
    kc.load_realm(fixture_realm());
    let tmp = tempfile::tempdir().unwrap();
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(tmp.path()).unwrap());
    let (enc, keyring) = age_keys();
    for (source, secret) in [
        (
            Box::new(
                PostgresSource::builder(PgConnection::from_url(db.url()).unwrap())
                    .build()
                    .unwrap(),
            ) as Box<dyn stoa_backup::core::Source>,
            false,
        ),
        (
            Box::new(
                KeycloakSource::builder(keycloak(&kc))
                    .realm("stoa")
                    .build()
                    .unwrap(),
            ),
            true,
        ),
    ] {
        let mut b = Pipeline::builder()
            .source(source)
            .sink(sink.clone())
            .verifier(ChecksumVerifier::new());
        if secret {
            b = b.encryption(enc.clone());
        }
        assert!(b.build().unwrap().run().await.unwrap().is_complete());
    }
    let production_realm = kc.realm_representation("stoa").unwrap();
    let (scratch_name, _guard) = fresh_target("drill_scratch").await;

    for pass in [true, false] {
        let database = ScratchDatabase::new(server(), &scratch_name).unwrap();
        let realm = ScratchRealm::new(keycloak(&kc), "stoa-drill").unwrap();
        let report = drill(
            sink.clone(),
            &keyring,
            &database,
            &realm,
            kc.clone(),
            db.name().to_string(),
            pass,
        )
        .drill()
        .await
        .unwrap();
        let expected = if pass {
            Verdict::Passed
        } else {
            Verdict::Failed
        };
        assert_eq!(report.verdict, expected, "{}", report.table());
        let recovery = report.recovery.as_ref().unwrap();
        let checks = recovery.checks.as_ref().unwrap();
        if pass {
            assert!(checks.failed().is_empty(), "{}", checks.table());
        } else {
            assert_eq!(checks.failed(), ["scratch targets equal production"]);
        }
        assert!(report.time_to_restore_ms > 0);
        assert_eq!(report.cleaned_up.len(), 2);
        assert!(
            report.cleaned_up.iter().all(|c| c.ok),
            "{:?}",
            report.cleaned_up
        );
        assert!(
            !database_exists(&scratch_name).await,
            "no scratch database left"
        );
        assert!(!kc.has_realm("stoa-drill"), "no scratch realm left");
        // Production untouched.
        assert_eq!(kc.realm_representation("stoa").unwrap(), production_realm);
        assert!(database_exists(db.name()).await);
    }

    // The production realm as scratch realm: refused before any write, and not deleted.
    let database = ScratchDatabase::new(server(), &scratch_name).unwrap();
    let realm = ScratchRealm::new(keycloak(&kc), "stoa").unwrap();
    let report = drill(
        sink.clone(),
        &keyring,
        &database,
        &realm,
        kc.clone(),
        db.name().to_string(),
        true,
    )
    .drill()
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Failed);
    assert!(
        report.error.as_deref().unwrap().contains("exists already"),
        "{:?}",
        report.error
    );
    assert!(kc.has_realm("stoa"));
    assert_eq!(kc.realm_representation("stoa").unwrap(), production_realm);
    assert!(!database_exists(&scratch_name).await);
    let e = ScratchRealm::new(keycloak(&kc), "master").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

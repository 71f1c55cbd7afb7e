//! The keys a raft snapshot restore needs, from the seal recorded at backup: listed in the
//! plan; too few key shares at hand fail the plan before the snapshot is sent.

use stoa_backup::core::{KeyKind, Restore};

use super::snapshots::snapshot_run;
use super::*;

fn driver(e: &Env, restorer: RaftSnapshotRestorer) -> Restore {
    Restore::builder()
        .sink(e.sink.clone())
        .keyring(e.keyring.clone())
        .restorer(restorer)
        .existing(ExistingDataPolicy::Overwrite)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_shamir_snapshot_needs_its_unseal_shares_and_too_few_fail_the_plan() {
    let fake = FakeVault::start().await;
    fake.set_seal("shamir", 3, 5);
    let e = env();
    let report = snapshot_run(&e, &fake).await;
    assert_eq!(
        report.status,
        RunStatus::Complete,
        "{:?}",
        report.manifest.failures
    );
    let seal = &report.manifest.artifacts[0].facts["seal"];
    assert_eq!(seal["seal_type"], "shamir");
    assert_eq!(
        (seal["threshold"].as_u64(), seal["shares"].as_u64()),
        (Some(3), Some(5))
    );

    // Nothing said about the shares: listed, and the plan cannot tell whether they are here.
    let plan = driver(&e, RaftSnapshotRestorer::new(token_conn(&fake)).unwrap())
        .plan(&report.manifest)
        .await
        .unwrap();
    let keys = &plan.components[0].keys;
    let shares = keys
        .iter()
        .find(|k| k.kind == KeyKind::UnsealShares)
        .unwrap();
    assert!(shares.detail.contains("3 of 5 shares"), "{shares:?}");
    assert_eq!(shares.held, None);
    assert!(keys
        .iter()
        .any(|k| k.kind == KeyKind::AgeIdentity && k.held == Some(true)));

    // Two of three at hand: the plan fails naming the shares, and nothing is sent.
    let e2 = driver(
        &e,
        RaftSnapshotRestorer::new(token_conn(&fake))
            .unwrap()
            .key_shares_at_hand(2),
    )
    .plan(&report.manifest)
    .await
    .unwrap_err();
    assert_eq!(e2.kind(), ErrorKind::Config, "{e2}");
    assert!(e2.to_string().contains("unseal key shares"), "{e2}");
    assert!(e2.to_string().contains("2 at hand"), "{e2}");
    assert!(fake.restores().is_empty());

    // Three at hand: held, and the restore goes ahead.
    let restore = driver(
        &e,
        RaftSnapshotRestorer::new(token_conn(&fake))
            .unwrap()
            .key_shares_at_hand(3),
    );
    let plan = restore.plan(&report.manifest).await.unwrap();
    let shares = plan.components[0]
        .keys
        .iter()
        .find(|k| k.kind == KeyKind::UnsealShares)
        .unwrap();
    assert_eq!(shares.held, Some(true));
    restore.apply(&plan).await.unwrap();
    assert_eq!(fake.restores().len(), 1);
}

#[tokio::test]
async fn an_auto_unseal_snapshot_needs_its_kms_key_and_recovery_shares() {
    let fake = FakeVault::start().await;
    fake.set_seal("awskms", 2, 3);
    let e = env();
    let report = snapshot_run(&e, &fake).await;
    let plan = driver(&e, RaftSnapshotRestorer::new(token_conn(&fake)).unwrap())
        .plan(&report.manifest)
        .await
        .unwrap();
    let keys = &plan.components[0].keys;
    let kms = keys.iter().find(|k| k.kind == KeyKind::KmsKey).unwrap();
    assert!(kms.name.contains("awskms"), "{kms:?}");
    assert_eq!(kms.held, None);
    let recovery = keys
        .iter()
        .find(|k| k.kind == KeyKind::UnsealShares)
        .unwrap();
    assert!(
        recovery.name.contains("recovery key shares"),
        "{recovery:?}"
    );
    assert!(recovery.detail.contains("2 of 3 shares"), "{recovery:?}");
    // The plan's table names them; no key material anywhere.
    let table = plan.table();
    assert!(table.contains("age1"), "{table}");
}

//! Infisical provider against the fake Infisical over real HTTP: round trips with hundreds
//! of secrets in nested folders, hidden values, imports and references, token expiry, 429,
//! v3 paths, restore policies, approval policies, and no secret or token in traces.

use serde_json::{json, Value};
use stoa_backup::core::manifest::{ArtifactRecord, Manifest};
use stoa_backup::core::{ErrorKind, ExistingDataPolicy, Pipeline, RunStatus, ZstdCodec};
use stoa_backup::providers::infisical::{
    InfisicalApi, InfisicalConnection, InfisicalRestorer, InfisicalSource, FORMAT,
};
use stoa_backup_test_support::artifacts::{assert_no_plaintext, plain_bytes};
use stoa_backup_test_support::infisical_fake::{FakeInfisical, CLIENT_ID, HIDDEN};
use stoa_backup_test_support::trace::TraceCapture;

use crate::encrypted_dir::{env, Env};
use crate::restore_support::restore_component;

fn conn(fake: &FakeInfisical) -> InfisicalConnection {
    InfisicalConnection::new(&fake.url(), CLIENT_ID, fake.client_secret()).unwrap()
}

const HIDDEN_REAL_VALUE: &str = "hidden-real-value-7e57";

/// ~320 secrets over nested folders of `dev`, tags, comments, references, one hidden value,
/// one import, one personal override; `prod` gets a few.
fn populate(fake: &FakeInfisical) -> (String, Vec<String>) {
    let p = fake.add_project("stoa", &["dev", "prod"]);
    fake.add_tag(&p, "pci");
    fake.add_tag(&p, "internal");
    let mut values = Vec::new();
    for i in 0..300 {
        let path = format!("/team-{}/svc-{}/region-{}", i % 4, i % 9, i % 2);
        let v = format!("inf-s3cr3t-{i:04}-{:06x}", 0xabc000 + i);
        let tags: &[&str] = match i % 3 {
            0 => &["pci"],
            1 => &["pci", "internal"],
            _ => &[],
        };
        fake.put(
            &p,
            "dev",
            &path,
            &format!("KEY_{i}"),
            &v,
            &format!("comment {i}"),
            tags,
        );
        values.push(v);
    }
    fake.put(
        &p,
        "dev",
        "/",
        "ROOT_URL",
        "postgres://root-pw-9a9a@db:5432/stoa",
        "primary",
        &["pci"],
    );
    values.push("root-pw-9a9a".into());
    fake.put(
        &p,
        "dev",
        "/payments",
        "DERIVED",
        "x-${dev.payments.BASE}-y",
        "",
        &[],
    );
    fake.put(&p, "dev", "/payments", "BASE", "base-value-3c3c", "", &[]);
    values.push("base-value-3c3c".into());
    fake.put(
        &p,
        "dev",
        "/payments",
        "NOT_READABLE",
        HIDDEN_REAL_VALUE,
        "",
        &[],
    );
    fake.hide_values_of("NOT_READABLE");
    fake.add_folder(&p, "dev", "/empty/leaf");
    fake.put_personal(&p, "dev", "/", "MY_OVERRIDE", "personal-value-4d4d");
    fake.put(
        &p,
        "prod",
        "/shared",
        "PROD_ONLY",
        "prod-value-5e5e",
        "",
        &[],
    );
    values.push("prod-value-5e5e".into());
    fake.add_import(&p, "dev", "/payments", "prod", "/shared");
    (p, values)
}

async fn doc_of(e: &Env, a: &ArtifactRecord) -> Value {
    let b = plain_bytes(e.sink.as_ref(), a, &e.keyring).await;
    serde_json::from_slice(&b).unwrap()
}

async fn backup(e: &Env, source: InfisicalSource) -> Manifest {
    let r = Pipeline::builder()
        .source(source)
        .sink(e.sink.clone())
        .compression(ZstdCodec::new(3).unwrap())
        .encryption(e.encryption.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Complete, "{:?}", r.manifest.failures);
    r.manifest
}

fn restorable(doc: &Value) -> Value {
    let secrets: Vec<Value> = doc["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.as_object_mut().unwrap().remove("version");
            s
        })
        .collect();
    json!({"folders": doc["folders"], "secrets": secrets})
}

#[tokio::test]
async fn round_trip_with_hundreds_of_secrets_in_nested_folders() {
    let fake = FakeInfisical::start().await;
    let (p, values) = populate(&fake);
    let e = env();
    let source = || {
        InfisicalSource::builder(conn(&fake), &p, Vec::<String>::new())
            .build()
            .unwrap()
    };
    let m1 = backup(&e, source()).await;
    assert_eq!(m1.artifacts.len(), 2);
    let dev = m1
        .artifacts
        .iter()
        .find(|a| a.name == format!("{p}/dev.json"))
        .unwrap();
    assert!(dev.sensitive);
    assert_eq!(dev.facts["secrets"], 303);
    assert_eq!(dev.facts["hidden_values"], 1);
    assert_eq!(dev.facts["imports"], 1);
    assert_eq!(dev.facts["personal_skipped"], 1);
    assert_eq!(dev.facts["tags"], json!(["internal", "pci"]));
    assert_eq!(dev.facts["api"], "v4");
    assert_no_plaintext(&e.dir, &values);

    let d1 = doc_of(&e, dev).await;
    assert_eq!(d1["format"], FORMAT);
    let text = d1.to_string();
    assert!(!text.contains(HIDDEN) && !text.contains(HIDDEN_REAL_VALUE));
    assert!(!text.contains("personal-value-4d4d"));
    // Imports kept as references: where they point, not the imported values.
    assert_eq!(d1["imports"][0]["environment"], "prod");
    assert_eq!(d1["imports"][0]["secretPath"], "/shared");
    assert!(!text.contains("prod-value-5e5e"));
    assert_eq!(
        d1["hidden"],
        json!([{"path": "/payments", "key": "NOT_READABLE"}])
    );
    let derived = d1["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "DERIVED")
        .unwrap();
    assert_eq!(derived["value"], "x-${dev.payments.BASE}-y");
    assert_eq!(derived["references"], json!(["${dev.payments.BASE}"]));
    assert!(d1["folders"]
        .as_array()
        .unwrap()
        .contains(&json!("/empty/leaf")));
    let k1 = d1["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "KEY_1")
        .unwrap();
    assert_eq!(k1["tags"], json!(["internal", "pci"]));
    assert_eq!(k1["comment"], "comment 1");
    assert_eq!(k1["type"], "shared");
    assert_eq!(k1["version"], 1);

    // Wipe, restore the run (both environments), export again: equal.
    fake.wipe(&p, "dev");
    fake.wipe(&p, "prod");
    let prod = m1
        .artifacts
        .iter()
        .find(|a| a.name.ends_with("prod.json"))
        .unwrap();
    // The plan names Infisical's own key, which the library cannot check.
    let planned = stoa_backup::core::Restore::builder()
        .sink(e.sink.clone())
        .keyring(e.keyring.clone())
        .restorer(InfisicalRestorer::new(conn(&fake)).unwrap())
        .build()
        .unwrap()
        .plan(&m1)
        .await
        .unwrap();
    let key = planned.components[0]
        .keys
        .iter()
        .find(|k| k.kind == stoa_backup::core::KeyKind::ServiceKey)
        .unwrap();
    assert!(
        key.name.contains("ENCRYPTION_KEY") && key.held.is_none(),
        "{key:?}"
    );
    let restorer = InfisicalRestorer::new(conn(&fake)).unwrap();
    let r = restore_component(
        e.sink.clone(),
        &m1,
        &e.keyring,
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    let prod_secrets = prod.facts["secrets"].as_u64().unwrap();
    assert_eq!(prod_secrets, 1);
    assert_eq!(r.created, 303 + prod_secrets, "{r:?}");
    assert!(
        r.notes.iter().any(|n| n.contains("hidden")),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes.iter().any(|n| n.contains("imports")),
        "{:?}",
        r.notes
    );
    assert_eq!(
        fake.get(&p, "dev", "/team-1/svc-1/region-1", "KEY_1")
            .unwrap()
            .value,
        values[1]
    );
    assert!(fake.get(&p, "dev", "/payments", "NOT_READABLE").is_none());
    assert!(fake.folders(&p, "dev").contains(&"/empty/leaf".to_string()));

    let m2 = backup(&e, source()).await;
    let dev2 = m2.artifacts.iter().find(|a| a.name == dev.name).unwrap();
    let d2 = doc_of(&e, dev2).await;
    assert_eq!(restorable(&d1), restorable(&d2));
    let prod2 = m2.artifacts.iter().find(|a| a.name == prod.name).unwrap();
    assert_eq!(
        restorable(&doc_of(&e, prod).await),
        restorable(&doc_of(&e, prod2).await)
    );

    // Folders were created top-down, secrets written in batches per folder.
    let reqs = fake.requests();
    let batches = reqs
        .iter()
        .filter(|(m, p)| m == "POST" && p.starts_with("/api/v4/secrets/batch"))
        .count();
    assert!((20..303).contains(&batches), "{batches} batch requests");
}

#[tokio::test]
async fn token_expiry_rate_limits_and_v3_paths() {
    let fake = FakeInfisical::start().await;
    let (p, _) = populate(&fake);
    let e = env();
    let source = InfisicalSource::builder(conn(&fake), &p, ["dev"])
        .build()
        .unwrap();
    let pipeline = Pipeline::builder()
        .source(source)
        .sink(e.sink.clone())
        .encryption(e.encryption.clone())
        .build()
        .unwrap();
    assert!(pipeline.run().await.unwrap().is_complete());
    assert_eq!(fake.logins(), 1);
    // Expired token: 403 TokenError, then a new login, and the run completes.
    fake.expire_tokens();
    fake.rate_limit_next(2);
    let r = pipeline.run().await.unwrap();
    assert!(r.is_complete(), "{:?}", r.manifest.failures);
    assert_eq!(fake.logins(), 2);
    assert_eq!(fake.rate_limit_hits(), 2);

    // v3 paths with workspaceId.
    let v3 = conn(&fake).api(InfisicalApi::V3);
    let m = backup(
        &e,
        InfisicalSource::builder(v3.clone(), &p, ["dev"])
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(m.artifacts[0].facts["api"], "v3");
    assert_eq!(m.artifacts[0].facts["secrets"], 303);
    let reqs = fake.requests();
    assert!(reqs
        .iter()
        .any(|(_, q)| q.starts_with("/api/v3/secrets/raw?workspaceId=")));
    assert!(reqs
        .iter()
        .any(|(_, q)| q.starts_with("/api/v1/folders?workspaceId=")));
    fake.wipe(&p, "dev");
    let r = restore_component(
        e.sink.clone(),
        &m,
        &e.keyring,
        InfisicalRestorer::new(v3).unwrap(),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.created, 303);
    assert!(fake
        .requests()
        .iter()
        .any(|(m, q)| m == "POST" && q.starts_with("/api/v3/secrets/batch/raw")));

    // Wrong secret: unauthenticated, and the secret is not in the error.
    let bad = InfisicalConnection::new(&fake.url(), CLIENT_ID, "cs-wrong-secret-1234").unwrap();
    let r = Pipeline::builder()
        .source(InfisicalSource::builder(bad, &p, ["dev"]).build().unwrap())
        .sink(e.sink.clone())
        .encryption(e.encryption.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    let f = &r.manifest.failures[0].error;
    assert!(
        f.contains("unauthenticated") && !f.contains("cs-wrong-secret-1234"),
        "{f}"
    );
}

#[tokio::test]
async fn restore_dry_run_policies_and_approval() {
    let fake = FakeInfisical::start().await;
    let p = fake.add_project("stoa", &["dev"]);
    fake.add_tag(&p, "pci");
    for i in 0..10 {
        fake.put(
            &p,
            "dev",
            "/app",
            &format!("K{i}"),
            &format!("v{i}"),
            "",
            &["pci"],
        );
    }
    for i in 0..5 {
        fake.put(
            &p,
            "dev",
            "/locked",
            &format!("L{i}"),
            &format!("l{i}"),
            "",
            &[],
        );
    }
    let e = env();
    let m = backup(
        &e,
        InfisicalSource::builder(conn(&fake), &p, ["dev"])
            .build()
            .unwrap(),
    )
    .await;
    // Drift: K0 changed, K1 and K2 removed, locked folder emptied.
    fake.wipe(&p, "dev");
    for i in 0..10 {
        if i != 1 && i != 2 {
            fake.put(
                &p,
                "dev",
                "/app",
                &format!("K{i}"),
                &format!("v{i}"),
                "",
                &["pci"],
            );
        }
    }
    fake.put(&p, "dev", "/app", "K0", "changed", "", &["pci"]);
    fake.require_approval("dev", "/locked");
    let restorer = InfisicalRestorer::new(conn(&fake)).unwrap();
    let restore = |existing, dry_run| {
        restore_component(
            e.sink.clone(),
            &m,
            &e.keyring,
            restorer.clone(),
            existing,
            dry_run,
        )
    };

    let before = fake.requests().len();
    let r = restore(ExistingDataPolicy::Overwrite, true).await.unwrap();
    assert_eq!((r.created, r.updated, r.skipped), (7, 1, 7), "{r:?}");
    assert!(
        r.notes
            .iter()
            .any(|n| n
                .contains("1 folders to create, 7 secrets to create, 1 to update, 7 unchanged")),
        "{:?}",
        r.notes
    );
    assert!(
        fake.requests()[before..]
            .iter()
            .all(|(m, q)| m == "GET" || q.starts_with("/api/v1/auth/universal-auth/login")),
        "a dry run only reads"
    );

    let err = restore(ExistingDataPolicy::Fail, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(fake.get(&p, "dev", "/app", "K1").is_none());

    let r = restore(ExistingDataPolicy::Skip, false).await.unwrap();
    // K1, K2 created; the 5 under /locked need approval: not restored, reported.
    assert_eq!(r.created, 2, "{r:?}");
    assert_eq!(r.facts["pending_approval"], 5);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("NOT RESTORED") && n.contains("/locked")),
        "{:?}",
        r.notes
    );
    assert!(fake.get(&p, "dev", "/locked", "L0").is_none());
    assert_eq!(fake.get(&p, "dev", "/app", "K0").unwrap().value, "changed");

    let r = restore(ExistingDataPolicy::Overwrite, false).await.unwrap();
    assert_eq!(r.updated, 1);
    assert_eq!(fake.get(&p, "dev", "/app", "K0").unwrap().value, "v0");
    assert!(fake
        .requests()
        .iter()
        .any(|(m, q)| m == "PATCH" && q.starts_with("/api/v4/secrets/batch")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_or_token_in_trace_output() {
    let capture = TraceCapture::install();
    let fake = FakeInfisical::start().await;
    let (p, values) = populate(&fake);
    let e = env();
    fake.expire_tokens();
    let m = backup(
        &e,
        InfisicalSource::builder(conn(&fake), &p, ["dev"])
            .build()
            .unwrap(),
    )
    .await;
    fake.expire_tokens();
    fake.rate_limit_next(1);
    fake.wipe(&p, "dev");
    restore_component(
        e.sink.clone(),
        &m,
        &e.keyring,
        InfisicalRestorer::new(conn(&fake)).unwrap(),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    let mut needles = values;
    needles.extend(fake.issued_tokens());
    needles.push(fake.client_secret());
    needles.push(HIDDEN_REAL_VALUE.into());
    capture.assert_free_of(&needles);
}

/// One call to the fake's API as a machine identity: universal-auth login, then the call
/// with the bearer token. Returns the status and the JSON body.
async fn api(fake: &FakeInfisical, method: &str, path: &str, body: Value) -> (u16, Value) {
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/v1/auth/universal-auth/login", fake.url()))
        .json(&json!({"clientId": CLIENT_ID, "clientSecret": fake.client_secret()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = http
        .request(method, format!("{}{path}", fake.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A restore target set up the way an operator would, through Infisical's API: a new
/// project (without the default environments), its environment and the tags the backup
/// uses. The restored secrets get those tags (mapped by slug).
#[tokio::test]
async fn restore_into_a_project_created_through_the_api() {
    let fake = FakeInfisical::start().await;
    let (p, _) = populate(&fake);
    let e = env();
    let m = backup(
        &e,
        InfisicalSource::builder(conn(&fake), &p, vec!["dev".to_string()])
            .build()
            .unwrap(),
    )
    .await;
    let (status, created) = api(
        &fake,
        "POST",
        "/api/v1/projects",
        json!({"projectName": "stoa-restore", "slug": "stoa-restore", "shouldCreateDefaultEnvs": false}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let project = created["project"].clone();
    assert_eq!(project["name"], "stoa-restore");
    assert_eq!(project["slug"], "stoa-restore");
    assert_eq!(project["environments"], json!([]));
    let target = project["id"].as_str().unwrap().to_string();
    assert_eq!(project["_id"], target);
    // A schema error: 422 with the zod issues.
    let (status, bad) = api(
        &fake,
        "POST",
        "/api/v1/projects",
        json!({"slug": "no-name"}),
    )
    .await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (422, Some("ValidationFailure")),
        "{bad}"
    );
    assert_eq!(bad["message"][0]["path"], json!(["projectName"]), "{bad}");
    // The same slug twice is refused.
    let (status, again) = api(
        &fake,
        "POST",
        "/api/v1/projects",
        json!({"projectName": "other", "slug": "stoa-restore"}),
    )
    .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("BadRequest")),
        "{again}"
    );

    let envs = format!("/api/v1/projects/{target}/environments");
    let (status, env_answer) = api(
        &fake,
        "POST",
        &envs,
        json!({"name": "Development", "slug": "dev", "position": 1}),
    )
    .await;
    assert_eq!(status, 200, "{env_answer}");
    assert_eq!(env_answer["projectId"], target.as_str());
    assert_eq!(env_answer["environment"]["slug"], "dev");
    assert_eq!(env_answer["environment"]["name"], "Development");
    let (status, dup) = api(&fake, "POST", &envs, json!({"name": "Dev", "slug": "dev"})).await;
    assert_eq!(
        (status, dup["error"].as_str()),
        (400, Some("BadRequest")),
        "{dup}"
    );

    let tags = format!("/api/v1/projects/{target}/tags");
    let mut tag_ids = Vec::new();
    for slug in ["internal", "pci"] {
        let (status, tag) = api(
            &fake,
            "POST",
            &tags,
            json!({"slug": slug, "color": "#d9534f"}),
        )
        .await;
        assert_eq!(status, 200, "{tag}");
        assert_eq!(tag["workspaceTag"]["slug"], slug);
        tag_ids.push(tag["workspaceTag"]["id"].as_str().unwrap().to_string());
    }
    let (status, dup) = api(
        &fake,
        "POST",
        &tags,
        json!({"slug": "pci", "color": "#000000"}),
    )
    .await;
    assert_eq!(
        (status, dup["error"].as_str()),
        (400, Some("BadRequest")),
        "{dup}"
    );

    // A project created with the defaults gets Infisical's three environments.
    let (_, defaults) = api(
        &fake,
        "POST",
        "/api/v1/projects",
        json!({"projectName": "with-defaults"}),
    )
    .await;
    let slugs: Vec<&str> = defaults["project"]["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["dev", "staging", "prod"]);

    let restorer = InfisicalRestorer::new(conn(&fake))
        .unwrap()
        .target_project(&p, &target);
    let r = restore_component(
        e.sink.clone(),
        &m,
        &e.keyring,
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.created, 303, "{r:?}");
    assert!(
        !r.notes.iter().any(|n| n.contains("tags missing")),
        "{:?}",
        r.notes
    );
    let key_1 = fake
        .get(&target, "dev", "/team-1/svc-1/region-1", "KEY_1")
        .unwrap();
    let mut restored_tags = key_1.tag_ids.clone();
    restored_tags.sort();
    tag_ids.sort();
    assert_eq!(restored_tags, tag_ids);
}

//! A secret given through `${ENV}` or a `*_file` never appears in `config check`, in any
//! `--json` document, in `list`, or in the logs at trace level.

use crate::support::{local_config, small_database, stoa, token, Workspace};

#[tokio::test]
async fn secrets_from_the_environment_and_files_are_never_printed() {
    let db = small_database("cli_secrets", 5).await;
    let ws = Workspace::new();
    let from_env = token("env-secret");
    let from_file = token("file-secret");
    let secret_file = ws.write("pg-password", &format!("{from_file}\n"));
    // The local server trusts its clients: the passwords reach pg_dump, which needs none.
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            &format!(
                "  by-env:\n    type: postgres\n    url: ${{TEST_PG_URL}}\n    password: ${{TEST_PG_PASSWORD}}\n  by-file:\n    type: postgres\n    url: ${{TEST_PG_URL}}\n    password_file: {}\n",
                secret_file.display()
            ),
        ),
    );
    let env = [
        ("TEST_PG_URL", db.url()),
        ("TEST_PG_PASSWORD", from_env.as_str()),
    ];
    let runs = [
        stoa(ws.path(), &["config", "check"], &env).await.expect(0),
        stoa(ws.path(), &["config", "check", "--json"], &env)
            .await
            .expect(0),
        stoa(
            ws.path(),
            &["--log-level", "trace", "backup", "--json"],
            &env,
        )
        .await
        .expect(0),
        stoa(ws.path(), &["--log-level", "trace", "backup"], &env)
            .await
            .expect(0),
        stoa(ws.path(), &["--log-level", "trace", "list", "--json"], &env)
            .await
            .expect(0),
        stoa(ws.path(), &["list"], &env).await.expect(0),
        stoa(
            ws.path(),
            &["--log-level", "trace", "verify", "--json"],
            &env,
        )
        .await
        .expect(0),
        stoa(
            ws.path(),
            &["--log-level", "trace", "prune", "--json"],
            &env,
        )
        .await
        .expect(0),
        stoa(
            ws.path(),
            &[
                "--log-level",
                "trace",
                "restore",
                "by-file",
                "--to",
                "cli_secrets_never_created",
                "--json",
            ],
            &env,
        )
        .await
        .expect(0),
    ];
    for run in &runs {
        for secret in [&from_env, &from_file] {
            assert!(
                !run.stdout.contains(secret.as_str()),
                "secret in stdout:\n{run}"
            );
            assert!(
                !run.stderr.contains(secret.as_str()),
                "secret in stderr:\n{run}"
            );
        }
    }
    // The logs were at trace level, and the secrets were configured and shown as ***.
    assert!(runs[2].stderr.contains("TRACE"), "{}", runs[2]);
    let check = runs[1].json();
    assert_eq!(check["config"]["components"][0]["password"], "***");
    assert_eq!(check["config"]["components"][1]["password"], "***");
    assert!(runs[0].stdout.contains("by-env (postgres)"), "{}", runs[0]);
    // The backups ran with them.
    assert_eq!(runs[2].json()["verdict"], "succeeded");
    db.drop_db().await;
}

#[tokio::test]
async fn an_unreadable_secret_file_is_named() {
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            "  app:\n    type: postgres\n    url: postgres://127.0.0.1:5432/postgres\n    password_file: /nonexistent/pg-password\n",
        ),
    );
    let run = stoa(ws.path(), &["config", "check"], &[]).await.expect(2);
    assert!(
        run.stderr
            .contains("components.app.password_file: cannot read /nonexistent/pg-password"),
        "{run}"
    );
}

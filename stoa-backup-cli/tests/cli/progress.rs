//! Progress bars: drawn on a terminal (a pseudo-terminal from `script`, util-linux), with the
//! previous run's size as the bar's length; never drawn when stderr is piped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::support::{command, local_config, small_database, stoa, Workspace, BIN};

/// What the terminal showed (stdout and stderr together) for `stoa-backup <args>` run in a
/// pseudo-terminal, with the same clean environment as [`command`].
async fn on_a_terminal(dir: &Path, args: &str, env: &[(&str, &str)]) -> String {
    let template = command(dir, &[], env);
    let mut cmd = Command::new("script");
    cmd.args(["--quiet", "--return", "--command"])
        .arg(format!("'{BIN}' {args}"))
        .arg("/dev/null")
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in template.as_std().get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("TERM", "xterm");
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the backup on a terminal ends")
        .expect("run script (util-linux)");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "exit {:?}:\n{shown}", out.status);
    shown
}

#[tokio::test]
async fn a_backup_on_a_terminal_draws_a_bar_sized_by_the_previous_run() {
    let db = small_database("cli_progress_tty", 20_000).await;
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(&ws, "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n"),
    );
    let env = [("TEST_PG_URL", db.url())];
    let artifact = format!("app/{}.dump", db.name());

    // No previous run: a spinner with bytes (and rate), no size to reach.
    let first = on_a_terminal(ws.path(), "backup", &env).await;
    assert!(first.contains("complete, run"), "{first}");
    assert!(
        first.contains(&format!("{artifact} ")),
        "no progress: {first}"
    );
    assert!(
        !first.contains(&format!("{artifact} [")),
        "a bar without a size: {first}"
    );
    assert!(first.contains("\x1b[2K"), "the bars are cleared: {first:?}");

    // The previous run's plain size is the bar's length.
    let second = on_a_terminal(ws.path(), "backup", &env).await;
    let bar = second
        .split(['\r', '\n'])
        .find(|l| l.contains(&format!("{artifact} [")))
        .unwrap_or_else(|| panic!("no bar: {second}"));
    assert!(
        bar.contains(" of "),
        "the bar names the size to reach: {bar:?}"
    );
}

#[tokio::test]
async fn a_backup_with_piped_stderr_draws_no_progress() {
    let db = small_database("cli_progress_pipe", 2_000).await;
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(&ws, "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n"),
    );
    let env = [("TEST_PG_URL", db.url())];
    let bar = format!("app/{}.dump [", db.name());
    // Twice: the second run has a previous size, which would make a bar.
    for _ in 0..2 {
        let run = stoa(ws.path(), &["--log-level", "info", "backup"], &env)
            .await
            .expect(0);
        assert!(
            run.stderr.contains("backup progress"),
            "the events are still logged: {run}"
        );
        assert!(!run.stderr.contains('\r'), "{run}");
        assert!(!run.stderr.contains('\x1b'), "no terminal control: {run}");
        assert!(!run.stderr.contains(&bar), "no bar: {run}");
        assert!(
            !run.stderr.contains("artifact(s) stored"),
            "no checks line: {run}"
        );
    }
}

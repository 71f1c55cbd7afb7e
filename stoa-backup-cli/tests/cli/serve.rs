//! `serve`: the scheduler runs a component never backed up once at start (its newest
//! missed tick is recent), `/metrics` shows the run and the RPO, `/healthz` answers, a
//! manual component never runs, and SIGTERM stops it with exit 143; the replication lag of
//! a component in its replica is shown and refreshed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::support::{command, local_config, small_database, Workspace};

/// `serve --listen 127.0.0.1:0 --rpo-refresh 1s` in `ws`: the child and the address it
/// printed.
async fn spawn_serve(ws: &Workspace, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = command(
        ws.path(),
        &["serve", "--listen", "127.0.0.1:0", "--rpo-refresh", "1s"],
        env,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("serve printed nothing within 30 s")
        .expect("read stdout")
        .expect("a line");
    let addr = first
        .rsplit("http://")
        .next()
        .expect("an address")
        .trim()
        .to_string();
    (child, addr)
}

/// SIGTERM to `child`, which must exit within 10 s: its exit code.
async fn stop(child: &mut Child) -> Option<i32> {
    let pid = child.id().expect("pid");
    // SAFETY: kill(2) on the child's pid, which it still is: it is waited for below.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("serve did not exit within 10 s of SIGTERM")
        .expect("wait")
        .code()
}

/// `GET path` over HTTP/1.0: (status, body).
async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to serve");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample of `metric` whose labels include every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| {
            name.split('{').next() == Some(metric) && labels.iter().all(|x| name.contains(x))
        })
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test]
async fn serve_catches_up_a_never_run_job_exposes_metrics_and_stops_on_sigterm() {
    let db = small_database("cli_serve", 50).await;
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n    schedule: \"* * * * *\"\n    rpo: 1d\n  manual:\n    type: postgres\n    url: ${TEST_PG_URL}\n",
        ),
    );
    let env = [("TEST_PG_URL", db.url())];
    let (mut child, addr) = spawn_serve(&ws, &env).await;

    let (status, health) = get(&addr, "/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("serving"), "{health}");

    // Never backed up: it counts as having missed every tick, and its newest missed tick
    // (this minute's) is recent, so it runs once at start.
    let deadline = Instant::now() + Duration::from_secs(90);
    while ws.manifests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the catch-up run never completed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The metrics: the run, the RPO target and what is left of it.
    let metrics = loop {
        let (status, body) = get(&addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        let runs = sample(
            &body,
            "stoa_backup_runs_total",
            &["component=\"app\"", "result=\"success\""],
        );
        let remaining = sample(
            &body,
            "stoa_backup_rpo_remaining_seconds",
            &["component=\"app\""],
        );
        if runs.is_some_and(|r| r >= 1.0) && remaining.is_some_and(|r| r > 0.0) {
            break body;
        }
        assert!(Instant::now() < deadline, "metrics never settled:\n{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        sample(
            &metrics,
            "stoa_backup_rpo_target_seconds",
            &["component=\"app\""]
        ),
        Some(86_400.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "stoa_backup_last_success_timestamp_seconds",
            &["component=\"app\""]
        )
        .is_some_and(|t| t > 1.7e9),
        "{metrics}"
    );
    // The manual component never runs under serve.
    assert!(
        !metrics.contains("component=\"manual\",result=\"success\"} 1"),
        "{metrics}"
    );

    assert_eq!(stop(&mut child).await, Some(143));
    db.drop_db().await;
}

#[tokio::test]
async fn serve_exports_the_replication_lag_of_each_component_and_replica() {
    let db = small_database("cli_serve_lag", 20).await;
    let ws = Workspace::new();
    let env = [("TEST_PG_URL", db.url())];
    let dr = ws.path().join("dr");
    let config = |replicate_to: &str| {
        format!(
            "storage:\n  primary:\n    type: local\n    path: {}\n    create: true\n  dr:\n    type: local\n    path: {}\n    create: true\ncomponents:\n  app:\n    type: postgres\n    url: ${{TEST_PG_URL}}\n    storage: primary\n    schedule: \"0 0 1 1 *\"\n{replicate_to}",
            ws.backups().display(),
            dr.display()
        )
    };
    // A run made before the component replicated: the replica lacks it.
    ws.write("stoa-backup.yaml", &config(""));
    crate::support::stoa(ws.path(), &["backup"], &env)
        .await
        .expect(0);
    ws.write("stoa-backup.yaml", &config("    replicate_to: [dr]\n"));

    // A yearly schedule whose tick is long past the run: serve runs nothing itself.
    let (mut child, addr) = spawn_serve(&ws, &env).await;
    let labels = ["component=\"app\"", "target=\"dr\""];
    let lag = |body: &str| sample(body, "stoa_backup_replication_lag_seconds", &labels);

    let deadline = Instant::now() + Duration::from_secs(60);
    let behind = loop {
        let (_, body) = get(&addr, "/metrics").await;
        if lag(&body).is_some_and(|l| l > 0.0) {
            break body;
        }
        assert!(Instant::now() < deadline, "no lag shown:\n{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The copy counters are there from the start, at zero.
    assert_eq!(
        sample(
            &behind,
            "stoa_backup_replications_total",
            &["component=\"app\"", "target=\"dr\"", "result=\"failure\""]
        ),
        Some(0.0),
        "{behind}"
    );

    // Once the replica is brought up to date, the next refresh shows no lag.
    crate::support::stoa(ws.path(), &["replicate", "--to", "dr"], &env)
        .await
        .expect(0);
    loop {
        let (_, body) = get(&addr, "/metrics").await;
        if lag(&body) == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lag never went to 0:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert_eq!(stop(&mut child).await, Some(143));
    db.drop_db().await;
}

//! `PodExec` over the exec websocket of the fake API server: binary stdout streamed, exit
//! codes and the stderr tail, stdin half-close, v4-only servers, a missing pod.

use stoa_backup::core::{stream, ErrorKind};
use stoa_backup::providers::kubernetes::PodExec;
use stoa_backup_test_support::kube_fake::FakeKube;

#[tokio::test]
async fn pod_exec_streams_stdout_and_fails_with_stderr_tail() {
    let fake = FakeKube::start().await;
    fake.add_pod("db", "pg-0", &["postgres"]);
    let exec = PodExec::new(fake.client(), "db", "pg-0")
        .container("postgres")
        .component("postgres");
    let cmd = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];

    // A few MB of binary stdout, streamed.
    let es = exec
        .spawn(
            &cmd("head -c 3000000 /dev/zero | tr '\\0' '\\377'; echo done >&2"),
            None,
        )
        .await
        .unwrap();
    let out = stream::collect(es.stream).await.unwrap();
    assert_eq!(out.len(), 3_000_000);
    assert!(out.iter().all(|b| *b == 0xff));
    let o = es.outcome.await.unwrap();
    assert_eq!(
        (o.exit_code, o.stdout_bytes, o.stderr_tail.as_str()),
        (0, 3_000_000, "done")
    );

    // Non-zero exit: the same wording as local processes, with the stderr tail.
    let es = exec
        .spawn(
            &cmd("printf partial; echo 'pg_dump: error: connection refused' >&2; exit 2"),
            None,
        )
        .await
        .unwrap();
    let e = stream::collect(es.stream).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Source);
    let msg = e.to_string();
    assert!(
        msg.contains("exited with code 2")
            && msg.contains("connection refused")
            && msg.contains("pod db/pg-0"),
        "{msg}"
    );
    assert_eq!(e.component(), Some("postgres"));

    // stdin is fed, then closed (v5).
    let (o, out) = exec
        .run_collect(&cmd("wc -c"), Some(stream::once(vec![b'x'; 100_000])), 64)
        .await
        .unwrap();
    assert_eq!(o.exit_code, 0);
    assert_eq!(String::from_utf8(out).unwrap().trim(), "100000");

    // Servers that only speak v4.channel.k8s.io work too (without stdin half-close).
    fake.set_exec_protocols(&["v4.channel.k8s.io"]);
    let (o, out) = exec
        .run_collect(&cmd("printf v4; exit 0"), None, 64)
        .await
        .unwrap();
    assert_eq!((o.exit_code, out.as_slice()), (0, &b"v4"[..]));
    fake.set_exec_protocols(&["v5.channel.k8s.io", "v4.channel.k8s.io"]);

    // A missing pod is a clear NotFound.
    let e = PodExec::new(fake.client(), "db", "nope")
        .spawn(&cmd("true"), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("pods \"nope\" not found"), "{e}");
    let reqs = fake.exec_requests();
    assert_eq!(reqs[0].container.as_deref(), Some("postgres"));
    assert_eq!(reqs[0].command[0], "sh");
}

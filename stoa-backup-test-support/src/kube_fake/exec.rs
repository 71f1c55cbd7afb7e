//! Pod exec over the `v5.channel.k8s.io` / `v4.channel.k8s.io` websocket subprotocols: the
//! fake runs a local command and streams its stdout (channel 1), stderr (channel 2) and exit
//! status (channel 3, a `Status` object).

use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::server::{error_response, Body};
use super::store::ApiError;
use super::{ExecRequest, Shared};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;

/// Answers an exec upgrade request: 101 with the negotiated subprotocol, then the session
/// runs on the upgraded connection.
pub(crate) fn upgrade(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    namespace: String,
    pod: Value,
    command: Vec<String>,
    query: &[(String, String)],
) -> Response<Body> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if !header("upgrade").eq_ignore_ascii_case("websocket") {
        return error_response(&ApiError::bad_request("Upgrade request required"));
    }
    let key = header("sec-websocket-key");
    if key.is_empty() {
        return error_response(&ApiError::bad_request("missing Sec-WebSocket-Key"));
    }
    let offered: Vec<String> = header("sec-websocket-protocol")
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let supported = shared.exec.lock().expect("exec").protocols.clone();
    let Some(protocol) = supported
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .map(|p| p.to_string())
    else {
        return error_response(&ApiError::bad_request(format!(
            "none of the offered websocket subprotocols {offered:?} is supported ({supported:?})"
        )));
    };
    let param = |k: &str| {
        query
            .iter()
            .find(|(qk, _)| qk == k)
            .map(|(_, v)| v.as_str())
    };
    let pod_name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let container = match param("container") {
        Some(c) if !containers.is_empty() && !containers.iter().any(|x| x == c) => {
            return error_response(&ApiError::bad_request(format!(
                "container {c} is not valid for pod {pod_name}"
            )))
        }
        Some(c) => Some(c.to_string()),
        None => containers.first().cloned(),
    };
    if command.is_empty() {
        return error_response(&ApiError::bad_request(
            "you must specify at least 1 command",
        ));
    }
    let flag = |k: &str| matches!(param(k), Some("true") | Some("1"));
    let request = ExecRequest {
        namespace,
        pod: pod_name,
        container,
        command,
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr"),
        tty: flag("tty"),
    };
    let argv = {
        let exec = shared.exec.lock().expect("exec");
        (exec.handler)(&request)
    };
    shared
        .exec_log
        .lock()
        .expect("exec log")
        .push(request.clone());
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let v5 = protocol == "v5.channel.k8s.io";
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                eprintln!("fake kube: exec upgrade failed: {e}");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run_session(ws, argv, request, v5).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(hyper::header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

fn exit_status(code: i32) -> Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    }
}

async fn run_session<S>(
    ws: WebSocketStream<S>,
    argv: Result<Vec<String>, String>,
    request: ExecRequest,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(8);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        sink.close().await.ok();
    });

    let argv = match argv {
        Ok(a) if !a.is_empty() => a,
        Ok(_) | Err(_) => {
            let message = argv.err().unwrap_or_else(|| "empty command".into());
            let status = json!({"metadata": {}, "status": "Failure", "message": message,
                                "reason": "InternalError", "code": 500});
            tx.send(frame(STATUS, status.to_string().as_bytes()))
                .await
                .ok();
            drop(tx);
            writer.await.ok();
            return;
        }
    };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if request.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let status = json!({
                "metadata": {}, "status": "Failure",
                "message": format!("exec: \"{}\": {e}", argv[0]),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "127"}]},
            });
            tx.send(frame(STATUS, status.to_string().as_bytes()))
                .await
                .ok();
            drop(tx);
            writer.await.ok();
            return;
        }
    };
    let mut stdin = child.stdin.take();
    let pump = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                channel: u8,
                tx: mpsc::Sender<Message>| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(frame(channel, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
        })
    };
    let out = pump(
        Box::new(child.stdout.take().expect("piped")),
        STDOUT,
        tx.clone(),
    );
    let err = pump(
        Box::new(child.stderr.take().expect("piped")),
        STDERR,
        tx.clone(),
    );
    let reader = tokio::spawn(async move {
        while let Some(msg) = incoming.next().await {
            match msg {
                Ok(Message::Binary(b)) if !b.is_empty() => match b[0] {
                    STDIN => {
                        if let Some(s) = stdin.as_mut() {
                            if s.write_all(&b[1..]).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    CLOSE if v5 && b.get(1) == Some(&STDIN) => {
                        if let Some(mut s) = stdin.take() {
                            s.shutdown().await.ok();
                        }
                    }
                    _ => {}
                },
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        // The client went away (or, on v4, closed to signal the end of stdin).
        drop(stdin);
    });
    out.await.ok();
    err.await.ok();
    let code = match child.wait().await {
        Ok(s) => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
            }
            #[cfg(not(unix))]
            {
                s.code().unwrap_or(1)
            }
        }
        Err(_) => 1,
    };
    tx.send(frame(STATUS, exit_status(code).to_string().as_bytes()))
        .await
        .ok();
    drop(tx);
    writer.await.ok();
    reader.abort();
}

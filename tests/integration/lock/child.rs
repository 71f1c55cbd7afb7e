//! The child process of the kill test: this test binary re-run with
//! `--exact lock::child::holding_run --include-ignored` and its parameters in
//! [`PARAMS_ENV`]. It starts a run of `db` holding its lease in the sink, says so once its
//! second artifact streams, and waits there to be killed.

use std::path::PathBuf;

use serde_json::Value;
use stoa_backup::core::Pipeline;
use stoa_backup_test_support::child::{child_params, reached};

use super::{Backend, Gate, TTL};

/// The environment variable carrying the child's parameters (JSON).
pub(super) const PARAMS_ENV: &str = "STOA_LOCK_CHILD";

/// The marker the child prints, with its run's id, once it holds the lease and streams.
pub(super) const HOLDING: &str = "holding";

/// The parameters for a child on `backend`, with `workdir` of its own.
pub(super) fn params(backend: &Backend, workdir: &std::path::Path) -> String {
    serde_json::json!({"backend": backend.encode(), "workdir": workdir}).to_string()
}

/// The full name of the child test, as `--exact` wants it.
pub(super) fn child_test_name() -> String {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_crate, rest)| rest);
    format!("{module}::holding_run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of lock::killed, which runs it by re-exec with its parameters \
            in STOA_LOCK_CHILD; alone it has nothing to do and fails"]
async fn holding_run() {
    let params = child_params(PARAMS_ENV).unwrap_or_else(|| {
        panic!("{PARAMS_ENV} is not set: this is the child process of lock::killed, which starts it itself")
    });
    let v: Value = serde_json::from_str(&params).expect("the parameters are JSON");
    let backend = Backend::decode(&v["backend"]);
    let workdir = PathBuf::from(v["workdir"].as_str().expect("a workdir"));
    let sink = backend.sink(&workdir).await;
    let gate = Gate::new();
    // The default owner: this host, this process id, a random part.
    let pipeline = Pipeline::builder()
        .source(gate.clone())
        .sink(sink)
        .lock_in_sink()
        .lock_ttl(TTL)
        .concurrency(2)
        .build()
        .unwrap();
    let mut run = tokio::spawn(async move { pipeline.run().await });
    tokio::select! {
        run_id = gate.started() => reached(HOLDING, Some(&run_id)),
        r = &mut run => panic!("the run ended before it held its gate: {r:?}"),
    }
    let r = run.await;
    panic!("the run ended although its gate never opens: {r:?}");
}

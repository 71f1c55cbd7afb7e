//! The child process of the kill tests: this test binary re-run with
//! `--exact faults::child::killable_backup --include-ignored` and its parameters in
//! [`PARAMS_ENV`]. It runs the real backup with the hooks of its fault point and is killed
//! there.

use std::path::PathBuf;
use std::sync::Arc;

use stoa_backup_test_support::child::child_params;

use super::hooks::{FaultPoint, HookObserver, HookSink, Hooks};
use super::{local_sink, pipeline, retention};

/// The environment variable carrying the child's parameters (JSON).
pub(super) const PARAMS_ENV: &str = "STOA_FAULT_CHILD";

/// What the parent tells the child.
#[derive(Debug, Clone)]
pub(super) struct ChildParams {
    /// Where the child is killed.
    pub(super) point: FaultPoint,
    /// The database to back up.
    pub(super) database_url: String,
    /// The local sink's root.
    pub(super) sink_root: PathBuf,
}

impl ChildParams {
    pub(super) fn encode(&self) -> String {
        serde_json::json!({
            "point": self.point.name(),
            "database_url": self.database_url,
            "sink_root": self.sink_root,
        })
        .to_string()
    }

    fn decode(text: &str) -> ChildParams {
        let v: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{PARAMS_ENV} is not JSON: {e}"));
        let field = |name: &str| {
            v[name]
                .as_str()
                .unwrap_or_else(|| panic!("{PARAMS_ENV} has no string {name:?}: {text}"))
                .to_string()
        };
        let point = field("point");
        ChildParams {
            point: FaultPoint::parse(&point)
                .unwrap_or_else(|| panic!("{PARAMS_ENV} names no fault point: {point:?}")),
            database_url: field("database_url"),
            sink_root: PathBuf::from(field("sink_root")),
        }
    }
}

/// The full name of the child test, as `--exact` wants it (`faults::child::killable_backup`).
pub(super) fn child_test_name() -> String {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_crate, rest)| rest);
    format!("{module}::killable_backup")
}

/// The backup the kill tests kill. It never ends well: at its fault point it waits to be
/// killed, and if it gets past it the test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the faults::kill tests, which run it by re-exec with its \
            parameters in STOA_FAULT_CHILD; alone it has nothing to do and fails"]
async fn killable_backup() {
    let params = child_params(PARAMS_ENV).unwrap_or_else(|| {
        panic!(
            "{PARAMS_ENV} is not set: this is the child process of the faults::kill tests, \
             which start it themselves; run those instead"
        )
    });
    let params = ChildParams::decode(&params);
    let hooks = Hooks::new(params.point);
    let sink = HookSink {
        inner: local_sink(&params.sink_root),
        hooks: hooks.clone(),
    };
    let report = pipeline(
        &params.database_url,
        Arc::new(sink),
        Arc::new(HookObserver(hooks)),
        retention(),
        // The archive check reads the stored dump back only when not inline: that read is
        // where this point kills.
        params.point != FaultPoint::DuringVerification,
    )
    .run()
    .await;
    panic!(
        "the backup ended without stopping at {}: {report:?}",
        params.point
    );
}

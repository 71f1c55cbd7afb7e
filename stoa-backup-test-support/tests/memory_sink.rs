//! The in-memory sink keeps the sink contract.

use stoa_backup_core::MemorySink;
use stoa_backup_test_support::conformance::{
    run_sink_conformance, run_sink_conformance_with_prefix,
};
use stoa_backup_test_support::faulty::FaultySink;

#[tokio::test]
async fn memory_sink_passes_the_conformance_suite() {
    run_sink_conformance(&MemorySink::new()).await;
}

#[tokio::test]
async fn suites_can_share_a_sink() {
    let sink = MemorySink::new();
    let a = run_sink_conformance_with_prefix(&sink, "suite-a");
    let b = run_sink_conformance_with_prefix(&sink, "suite-a/");
    futures::join!(a, b);
}

#[tokio::test]
async fn an_unarmed_faulty_sink_is_transparent() {
    let sink = FaultySink::new(MemorySink::new());
    run_sink_conformance(&sink).await;
    let counts = sink.counts();
    assert!(counts.puts > 1100 && counts.injected == 0, "{counts:?}");
}

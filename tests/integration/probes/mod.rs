//! Change probes (issue #16): the tokens the scheduler's on-change trigger compares, against
//! the fake API server and the fake Grafana. Equal tokens while nothing the source backs up
//! changed (also across unrelated writes), a new token after each change, errors that keep
//! their kind and name the component and the operation.

#[cfg(feature = "grafana")]
mod grafana;
#[cfg(feature = "kubernetes")]
mod kubernetes;

use stoa_backup::core::Error;

/// Asserts a probe error names the component and the operation.
pub(crate) fn names_probe(e: &Error, component: &str) {
    assert_eq!(e.component(), Some(component), "{e}");
    assert_eq!(e.operation(), Some("probe changes"), "{e}");
}

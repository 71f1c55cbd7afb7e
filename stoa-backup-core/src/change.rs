//! Change probes: a cheap way to tell whether what a source backs up changed since the last
//! look, so that an "on every change" component is backed up when it changed and never when
//! it did not (the scheduler's on-change trigger polls them).

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;

/// A token standing for the state a probe watches: equal tokens mean nothing changed (a
/// list's resourceVersion, the versions of every dashboard, a digest of such values). Opaque:
/// only compared, never parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChangeToken(String);

impl ChangeToken {
    /// A token from any text that changes whenever the watched state does.
    pub fn new(token: impl Into<String>) -> Self {
        ChangeToken(token.into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChangeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Watches what a source backs up, cheaply (one list call, not an export).
#[async_trait]
pub trait ChangeProbe: Send + Sync + fmt::Debug {
    /// What the probe watches, for logs and errors (`helm releases in stoa-system`).
    fn describe(&self) -> String;

    /// The current token. Errors keep their kind (an unreachable server is
    /// [`Unavailable`](crate::ErrorKind::Unavailable)): a failed probe is no change.
    async fn probe(&self) -> Result<ChangeToken>;
}

macro_rules! forward_probe {
    ($ptr:ident) => {
        #[async_trait]
        impl<P: ChangeProbe + ?Sized> ChangeProbe for $ptr<P> {
            fn describe(&self) -> String {
                (**self).describe()
            }
            async fn probe(&self) -> Result<ChangeToken> {
                (**self).probe().await
            }
        }
    };
}
forward_probe!(Arc);
forward_probe!(Box);

/// Builds a [`ChangeToken`] from a set of entries, each a few fields standing for one
/// watched object (`[kind, namespace, name, resourceVersion]`). The order in which entries
/// are added does not matter (they are sorted; duplicates count once), so paging or an API's
/// listing order cannot change the token; fields are length-prefixed, so `["ab", "c"]` and
/// `["a", "bc"]` differ. The token is `sha256:<hex>` of the sorted entries.
#[derive(Debug, Clone, Default)]
pub struct ChangeDigest {
    entries: BTreeSet<Vec<String>>,
}

impl ChangeDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one entry.
    pub fn add<I, S>(&mut self, fields: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entries
            .insert(fields.into_iter().map(Into::into).collect());
        self
    }

    /// How many distinct entries were added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The token.
    pub fn finish(&self) -> ChangeToken {
        let mut h = Sha256::new();
        for entry in &self.entries {
            h.update((entry.len() as u64).to_be_bytes());
            for field in entry {
                h.update((field.len() as u64).to_be_bytes());
                h.update(field.as_bytes());
            }
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        ChangeToken(format!("sha256:{hex}"))
    }
}

type ProbeFn = dyn Fn() -> Pin<Box<dyn Future<Output = Result<ChangeToken>> + Send>> + Send + Sync;

/// A probe from a closure, for a source without a probe of its own ("configurable for any
/// source"): `FnProbe::new("row count of stoa.audit", || async { ... })`. The closure is
/// called on every probe; it should be cheap (one query, one list call) and return a token
/// that changes whenever what the source backs up does.
#[derive(Clone)]
pub struct FnProbe {
    describe: String,
    probe: Arc<ProbeFn>,
}

impl FnProbe {
    /// A probe described as `describe`, calling `probe` for the token.
    pub fn new<F, Fut>(describe: impl Into<String>, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ChangeToken>> + Send + 'static,
    {
        FnProbe {
            describe: describe.into(),
            probe: Arc::new(move || Box::pin(probe())),
        }
    }
}

impl fmt::Debug for FnProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnProbe")
            .field("describe", &self.describe)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ChangeProbe for FnProbe {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn probe(&self) -> Result<ChangeToken> {
        (self.probe)().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str);

    #[async_trait]
    impl ChangeProbe for Fixed {
        fn describe(&self) -> String {
            format!("fixed {}", self.0)
        }
        async fn probe(&self) -> Result<ChangeToken> {
            Ok(ChangeToken::new(self.0))
        }
    }

    #[tokio::test]
    async fn shared_and_boxed_probes_forward() {
        let shared: Arc<dyn ChangeProbe> = Arc::new(Fixed("a"));
        let boxed: Box<dyn ChangeProbe> = Box::new(Fixed("b"));
        assert_eq!(shared.probe().await.unwrap(), ChangeToken::new("a"));
        assert_eq!(boxed.probe().await.unwrap().as_str(), "b");
        assert_eq!(boxed.describe(), "fixed b");
        assert_ne!(ChangeToken::new("1"), ChangeToken::new("2"));
    }

    #[test]
    fn digests_ignore_order_and_separate_fields() {
        let mut a = ChangeDigest::new();
        a.add(["Tool", "t", "w", "7"]).add(["Tool", "t", "x", "8"]);
        let mut b = ChangeDigest::new();
        b.add(["Tool", "t", "x", "8"]).add(["Tool", "t", "w", "7"]);
        b.add(["Tool", "t", "w", "7"]);
        assert_eq!(a.finish(), b.finish());
        assert_eq!(b.len(), 2);
        assert!(a.finish().as_str().starts_with("sha256:"));

        let mut c = ChangeDigest::new();
        c.add(["Tool", "t", "w", "9"]).add(["Tool", "t", "x", "8"]);
        assert_ne!(a.finish(), c.finish(), "a new resourceVersion is a change");
        let (mut d, mut e) = (ChangeDigest::new(), ChangeDigest::new());
        d.add(["ab", "c"]);
        e.add(["a", "bc"]);
        assert_ne!(d.finish(), e.finish());
        let (mut f, mut g) = (ChangeDigest::new(), ChangeDigest::new());
        f.add(["a"]).add(["b"]);
        g.add(["a", "b"]);
        assert_ne!(f.finish(), g.finish());
        assert_ne!(ChangeDigest::new().finish(), d.finish());
    }

    #[tokio::test]
    async fn closures_are_probes() {
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = n.clone();
        let p = FnProbe::new("a counter", move || {
            let v = seen.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if v == 9 {
                    return Err(crate::Error::new(crate::ErrorKind::Unavailable, "down"));
                }
                Ok(ChangeToken::new(v.to_string()))
            }
        });
        assert_eq!(p.describe(), "a counter");
        assert!(format!("{p:?}").contains("a counter"));
        let first = p.probe().await.unwrap();
        assert_eq!(p.probe().await.unwrap(), first);
        n.store(1, std::sync::atomic::Ordering::SeqCst);
        assert_ne!(p.probe().await.unwrap(), first);
        n.store(9, std::sync::atomic::Ordering::SeqCst);
        let e = p.probe().await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unavailable);
        let shared: Arc<dyn ChangeProbe> = Arc::new(p);
        assert!(shared.probe().await.is_err());
    }
}

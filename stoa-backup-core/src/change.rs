//! Change probes: a cheap way to tell whether what a source backs up changed since the last
//! look, so that an "on every change" component is backed up when it changed and never when
//! it did not (the scheduler's on-change trigger polls them).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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
}

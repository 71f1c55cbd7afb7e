//! The types most programs need, in one import:
//!
//! ```
//! use stoa_backup_core::prelude::*;
//!
//! # fn demo() -> Result<()> {
//! let sink = std::sync::Arc::new(MemorySink::new());
//! let pipeline = Pipeline::builder()
//!     .source(FileSource::new("config", "/etc/stoa/config.yaml", "config.yaml"))
//!     .sink(sink.clone())
//!     .compression(ZstdCodec::new(3)?)
//!     .verifier(ChecksumVerifier::new())
//!     .retention(KeepRules::new().keep_daily(KeepCount::Last(30)))
//!     .build()?;
//! let catalog = Catalog::new(sink);
//! # let _ = (pipeline, catalog, RunFilter::default());
//! # Ok(()) }
//! ```
//!
//! It holds the pipeline and catalog types, retention rules, codecs, the built-in sources,
//! sink and verifier, the error types and the traits (so their methods are in scope).

pub use crate::catalog::{Catalog, RunFilter};
#[cfg(feature = "age")]
#[cfg_attr(docsrs, doc(cfg(feature = "age")))]
pub use crate::codec::AgeEncryption;
pub use crate::codec::{Keyring, ZstdCodec};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::lock::{LeaseOwner, RunLock, SinkLock};
pub use crate::observer::{Observer, TracingObserver};
pub use crate::pipeline::{Pipeline, RunReport};
pub use crate::process::CommandSpec;
pub use crate::replicate::{ReplicaFilter, Replicator};
pub use crate::restore::{Restore, RestoreContext, RestoreOptions, RestorePlan, Restorer};
pub use crate::retention::{ComponentRules, KeepCount, KeepRules, RetentionPolicy};
pub use crate::sink::{MemorySink, Sink, SinkExt};
pub use crate::source::Source;
pub use crate::sources::{CommandSource, FileRestorer, FileSource};
pub use crate::verify::{ChecksumVerifier, Verifier};

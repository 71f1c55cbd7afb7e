//! Infisical (current self-hosted; v4 secrets API, v3 paths for older servers).
//!
//! - [`InfisicalSource`]: for each configured project and environment, every secret of every
//!   folder (recursive listing) with its comment, tags, type, version and metadata, plus the
//!   folder tree and the folder's secret imports (kept as references, never their values).
//!   References inside values (`${env.path.KEY}`) are kept literally
//!   (`expandSecretReferences=false`). Values the identity may not read
//!   (`<hidden-by-infisical>`) are reported (manifest fact `hidden_values`, the document's
//!   `hidden` list) and never stored as values. One `<project>/<env>.json` artifact each.
//! - [`InfisicalRestorer`]: recreates folders top-down, then batch-creates (and, under
//!   `Overwrite`, upserts) secrets per folder; an approval-policy answer (200 with an
//!   `approval` object, nothing written) is reported as not restored; dry run.
//!
//! **The artifacts hold secret values.** They are marked sensitive: the pipeline refuses to
//! store them unless it encrypts (`.encryption(...)`), or the caller opts out explicitly and
//! loudly with `.store_secrets_unencrypted(true)`.
//!
//! Authentication is universal auth (a machine identity's client id and secret); the access
//! token is refreshed before it expires and on a 403 `TokenError`. 429 answers are retried
//! with back-off. Secrets, the client secret and tokens never appear in errors, `Debug`
//! output or traces.

mod client;
pub mod facts;
mod restore;
mod source;

pub use client::{InfisicalApi, InfisicalConnection};
pub use facts::InfisicalFacts;
pub use restore::InfisicalRestorer;
pub use source::{InfisicalSource, InfisicalSourceBuilder};

/// Default component name.
pub const COMPONENT: &str = "infisical";

/// Provider name in the manifest.
pub const PROVIDER: &str = "infisical-api";

/// `format` field of every document.
pub const FORMAT: &str = "stoa-backup/infisical/v1";

/// Content type of a document.
pub const CONTENT_TYPE: &str = "application/vnd.stoa.infisical+json";

/// The value Infisical sends for secrets the identity may not read.
pub const HIDDEN_VALUE: &str = "<hidden-by-infisical>";

//! The storage backends against real storage: a directory, real Git repositories and bare
//! remotes, and S3 servers (s3s-fs in-process; moto when `STOA_TEST_S3_ENDPOINT` names one).
//! One test binary, one module per backend, each behind its feature.

#[cfg(feature = "git")]
mod git;
#[cfg(feature = "local")]
mod local;
#[cfg(feature = "s3")]
mod s3;

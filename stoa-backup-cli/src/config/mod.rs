//! The configuration file (`stoa-backup.yaml`): where it is found, how it is read, and what
//! it holds once checked.
//!
//! Reading is in two steps: [`raw`] parses the YAML (unknown keys refused, every value with
//! its position), [`resolve`] checks it (`${ENV}` interpolation, `*_file` secrets, schedules,
//! retention, storage names) and builds the library's connections without connecting.

pub mod duration;
pub mod error;
pub mod interpolate;
pub mod keypath;
pub mod model;
pub mod raw;
pub mod references;
pub mod resolve;
pub mod schedule;
pub mod secret;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use model::Config;

/// The configuration used when no file is found: what `examples/quickstart.rs` does.
pub const DEFAULT: &str = include_str!("default.yaml");

/// The commented example `config example` prints: the guide's tables.
pub const EXAMPLE: &str = include_str!("example.yaml");

/// The name of the embedded default in messages.
pub const EMBEDDED: &str = "<embedded default>";

/// The file looked for in the working directory.
pub const FILE_NAME: &str = "stoa-backup.yaml";

/// Which configuration to read: the one named (`--config` or `STOA_BACKUP_CONFIG`), else
/// `./stoa-backup.yaml` if there is one, else the embedded default.
pub fn locate(named: Option<&Path>) -> Option<PathBuf> {
    match named {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let local = Path::new(FILE_NAME);
            local.is_file().then(|| local.to_path_buf())
        }
    }
}

/// Reads and checks the configuration [`locate`] finds, with variables from the process
/// environment.
pub fn load(named: Option<&Path>) -> Result<Config, ConfigError> {
    let lookup = |name: &str| std::env::var(name).ok();
    match locate(named) {
        None => parse(EMBEDDED, DEFAULT, &lookup),
        Some(path) => {
            let file = path.display().to_string();
            let source = std::fs::read_to_string(&path).map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    "check --config or STOA_BACKUP_CONFIG; `stoa-backup config example` prints a configuration to start from"
                } else {
                    "check the file's permissions"
                };
                ConfigError::file(&file, format!("cannot read the configuration: {e}")).with_hint(hint)
            })?;
            parse(&file, &source, &lookup)
        }
    }
}

/// Parses and checks `source`, read from `file`.
pub fn parse(file: &str, source: &str, lookup: resolve::Lookup<'_>) -> Result<Config, ConfigError> {
    let raw = match raw::parse(source) {
        Ok(Ok(raw)) => raw,
        Ok(Err(problem)) => {
            return Err(ConfigError::at(
                file,
                Some(&problem.location),
                problem.key,
                problem.message,
            ))
        }
        Err(e) => return Err(error::from_yaml(file, source, &e)),
    };
    resolve::resolve(file, raw, lookup)
}

#[cfg(test)]
mod tests;

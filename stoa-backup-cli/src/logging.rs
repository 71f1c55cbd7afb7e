//! Logs on stderr through tracing: `--log-level`, else `RUST_LOG`, else `warn`.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the subscriber. The filter is a level (`debug`) or comma-separated
/// `target=level` pairs with an optional bare default level (`warn,stoa_backup_core=debug`).
pub fn init(flag: Option<&str>) -> Result<(), String> {
    let spec = match flag {
        Some(f) => f.to_string(),
        None => std::env::var("RUST_LOG")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "warn".into()),
    };
    // A bare word is a level here (tracing would take it for a target name).
    let levels = ["off", "error", "warn", "info", "debug", "trace"];
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let level = part.rsplit_once('=').map_or(part, |(_, l)| l);
        if !levels.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{part:?} in {spec:?} is not a level: give error, warn, info, debug, trace (or off), or target=level pairs"
            ));
        }
    }
    let filter: Targets = spec.parse().map_err(|e| {
        format!("{spec:?} is not a log filter ({e}): give error, warn, info, debug, trace, or target=level pairs")
    })?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(crate::progress::LogWriter)
                .with_target(true),
        )
        .with(filter)
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))
}

//! Restores a verified PostgreSQL backup from `./stoa-backups` into `TARGET_DATABASE_URL`,
//! the safe way (restored beside the live database, then swapped in; the previous one is
//! kept as `<name>_old_<run id>`), and prints the row-count comparison with what was counted
//! at backup time.
//!
//! The dump is that of the target's own database (or of `DATABASE`) from the newest
//! complete, verified run holding one, so several databases can be backed up into one
//! directory; `RUN` picks a run instead. A restore that was interrupted mid-swap is finished
//! (same run) or undone (another run) by the next one, which says which.
//!
//! ```sh
//! cargo run --example quickstart          # make a backup first
//! TARGET_DATABASE_URL=postgres://postgres@127.0.0.1:5432/stoa_restored DATABASE=stoa \
//!     cargo run --example postgres_restore
//! ```
//! `STOA_BACKUP_DIR` picks the backup directory (default `./stoa-backups`) and
//! `STOA_AGE_IDENTITY` an age secret key for encrypted backups. SIGINT / SIGTERM stop the
//! restore (exit 130 / 143): pg_restore is killed, the live database stays as it was, and a
//! swap caught half-way is finished or undone by the next run.

use std::process::ExitCode;
use std::sync::Arc;

use stoa_backup::core::RunId;
use stoa_backup::prelude::*;
use stoa_backup::providers::postgres::{find_dump, DumpQuery};

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let shutdown = stoa_backup::signals::listen()?;
    let dir = std::env::var("STOA_BACKUP_DIR").unwrap_or_else(|_| "./stoa-backups".to_string());
    let target_url = std::env::var("TARGET_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/stoa_restored".to_string());

    let target = PgConnection::from_url(&target_url)?;
    let name = target.get_dbname().to_string();
    let server = target.with_dbname("postgres");
    let restore_target = RestoreTarget::NewDatabase {
        name: name.clone(),
        swap: true,
    };

    // The dump of the database asked for (by default the target's own), never merely the
    // newest run: with several databases in one directory that may hold another's dump.
    let mut query = match std::env::var("DATABASE") {
        Ok(db) => DumpQuery::database(db),
        Err(_) => DumpQuery::for_target(&restore_target),
    };
    if let Ok(run) = std::env::var("RUN") {
        query = query.run(RunId::parse(run)?);
    }
    let sink = Arc::new(LocalSink::new(&dir)?);
    let found = find_dump(&Catalog::new(sink.clone()), &query).await?;
    for warning in &found.warnings {
        println!("warning: {warning}");
    }
    println!(
        "restoring {} from run {} into {}",
        found.artifact.key,
        found.manifest.run_id,
        target.redacted_url(&name)
    );
    let keyring = match std::env::var("STOA_AGE_IDENTITY") {
        Ok(secret) => Keyring::new().with_identity(&secret)?,
        Err(_) => Keyring::default(),
    };
    // Planned first (nothing is written), then applied: the restore driver, as a platform
    // recovery uses it, with one restorer.
    let database = found.facts.database.clone().unwrap_or_else(|| name.clone());
    let restore = Restore::builder()
        .sink(sink.clone())
        .keyring(keyring)
        .restorer(PostgresRestorer::new(server, restore_target).from_database(database))
        .build()?;
    let plan = restore.plan(&found.manifest).await?;
    print!("{}", plan.table());
    // Dropping the restore kills pg_restore; the swap's own transaction rolls back with it.
    let restored = tokio::select! {
        restored = restore.apply(&plan) => restored?,
        () = shutdown.cancelled() => {
            eprintln!("interrupted: the restore was stopped; run it again to finish or undo it");
            return Ok(shutdown.exit_code().unwrap_or(ExitCode::FAILURE));
        }
    };
    let report = &restored.components[0].report;

    let recorded = found.facts.row_counts.unwrap_or_default();
    println!("{:<48} {:>12} {:>12}", "table", "at backup", "restored");
    if let Some(restored) = report.facts.get("row_counts").and_then(|v| v.as_object()) {
        for (table, n) in restored {
            let before = recorded
                .get(table)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into());
            println!("{table:<48} {before:>12} {:>12}", n.to_string());
        }
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

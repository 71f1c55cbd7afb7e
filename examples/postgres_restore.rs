//! Restores the latest verified PostgreSQL backup from `./stoa-backups` into
//! `TARGET_DATABASE_URL`, the safe way (restored beside the live database, then swapped
//! in; the previous one is kept as `<name>_old_<run id>`), and prints the row-count
//! comparison with what was counted at backup time.
//!
//! ```sh
//! cargo run --example quickstart          # make a backup first
//! TARGET_DATABASE_URL=postgres://postgres@127.0.0.1:5432/stoa_restored \
//!     cargo run --example postgres_restore
//! ```
//! `STOA_BACKUP_DIR` picks the backup directory (default `./stoa-backups`), `DATABASE` the
//! dumped database to restore when a run holds several, and `STOA_AGE_IDENTITY` an age
//! secret key for encrypted backups.

use std::sync::Arc;

use stoa_backup::prelude::*;
use stoa_backup::providers::postgres::{PostgresFacts, DUMP_CONTENT_TYPE};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var("STOA_BACKUP_DIR").unwrap_or_else(|_| "./stoa-backups".to_string());
    let target_url = std::env::var("TARGET_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/stoa_restored".to_string());
    let wanted = std::env::var("DATABASE").ok();

    let sink = Arc::new(LocalSink::new(&dir)?);
    let catalog = Catalog::new(sink.clone());
    let manifest = catalog
        .latest_verified("postgres")
        .await?
        .ok_or("no verified PostgreSQL backup in the catalog: run the quickstart first")?;
    let mut dumps = Vec::new();
    for a in &manifest.artifacts {
        if a.content_type == DUMP_CONTENT_TYPE {
            dumps.push((a, a.facts_as::<PostgresFacts>()?));
        }
    }
    let (artifact, facts) = dumps
        .into_iter()
        .find(|(_, f)| wanted.is_none() || f.database == wanted)
        .ok_or("the latest verified run holds no matching database dump")?;

    let target = PgConnection::from_url(&target_url)?;
    let name = target.get_dbname().to_string();
    let server = target.with_dbname("postgres");
    println!(
        "restoring {} from run {} into {}",
        artifact.key,
        manifest.run_id,
        target.redacted_url(&name)
    );
    let keyring = match std::env::var("STOA_AGE_IDENTITY") {
        Ok(secret) => Keyring::new().with_identity(&secret)?,
        Err(_) => Keyring::default(),
    };
    let restorer = PostgresRestorer::new(server, RestoreTarget::NewDatabase { name, swap: true });
    let report = restore_artifact(
        &sink,
        artifact,
        &keyring,
        &restorer,
        &RestoreOptions::default(),
    )
    .await?;

    let recorded = facts.row_counts.unwrap_or_default();
    println!("{:<48} {:>12} {:>12}", "table", "at backup", "restored");
    if let Some(restored) = report.facts.get("row_counts").and_then(|v| v.as_object()) {
        for (table, n) in restored {
            let before = recorded
                .get(table)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into());
            println!("{table:<48} {before:>12} {:>12}", n);
        }
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    Ok(())
}

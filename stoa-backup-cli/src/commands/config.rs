//! `config check` and `config example`.

use std::fmt::Write as _;

use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use super::{load_config, print_json, sinks};
use crate::cli::Cli;
use crate::config::model::{Config, Encryption, IdentitySource, Settings, Trigger, VaultMode};
use crate::config::EXAMPLE;
use crate::outcome::Outcome;

/// Validates the configuration without connecting and prints what it holds.
pub fn check(cli: &Cli) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    if cli.json {
        #[derive(Serialize)]
        struct Checked<'a> {
            config: &'a Config,
        }
        print_json("valid", Checked { config: &config });
    } else {
        print!("{}", describe(&config));
    }
    Outcome::Success
}

/// Prints the commented example.
pub fn example(cli: &Cli) -> Outcome {
    if cli.json {
        print_json("ok", json!({ "example": EXAMPLE }));
    } else {
        print!("{EXAMPLE}");
    }
    Outcome::Success
}

/// What `config check` prints for people.
fn describe(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "configuration {} is valid\n", config.file);
    let _ = writeln!(out, "storage targets:");
    for t in &config.storage {
        let _ = writeln!(out, "  {:<16} {}", t.name, sinks::describe(t));
    }
    if !config.replicate_to.is_empty() {
        let _ = writeln!(
            out,
            "\nreplicate_to (every component, but to its own target): {}",
            config.replicate_to.join(", ")
        );
    }
    match &config.encryption {
        Some(e) => {
            let _ = writeln!(out, "\nencryption: {}", describe_encryption(e));
        }
        None => {
            let _ = writeln!(out, "\nencryption: none (artifacts are stored unencrypted)");
        }
    }
    let _ = writeln!(out, "\ncomponents:");
    let now = Utc::now();
    for c in &config.components {
        let trigger = match &c.trigger {
            Trigger::Schedule(s) => {
                let next = s
                    .next_after(now)
                    .map(|t| format!(", next {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default();
                format!(
                    "schedule \"{}\" ({}){next}",
                    s.expression(),
                    s.time_zone().name()
                )
            }
            Trigger::OnChange => "on every change".into(),
            Trigger::Manual => "manual (no schedule)".into(),
        };
        let _ = writeln!(out, "  {} ({})", c.name, c.kind());
        let _ = writeln!(out, "      {}", settings_line(&c.settings));
        let _ = writeln!(out, "      when: {trigger}");
        let _ = writeln!(out, "      kept: {}", c.retention.summary());
        let _ = writeln!(out, "      storage: {}", c.storage);
        if !c.replicate_to.is_empty() {
            let _ = writeln!(
                out,
                "      replicate to: {} (each complete, verified run, after the backup)",
                c.replicate_to.join(", ")
            );
        }
        let replicated = !c.replicate_to.is_empty();
        let _ = writeln!(
            out,
            "      verify: {}",
            match (c.verify, c.verifier) {
                (true, Some(v)) => v.to_string(),
                // Only verified runs are copied (see commands::pipelines).
                (_, None) if replicated => {
                    "stored digests read back (only verified runs are replicated)".into()
                }
                (true, None) => "stored digests only (the provider has no verifier)".into(),
                (false, _) => "off (stored digests only)".into(),
            }
        );
        if let Some(rpo) = &c.rpo {
            let _ = writeln!(out, "      rpo: {rpo}");
        }
        if !c.labels.is_empty() {
            let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "      labels: {}", labels.join(", "));
        }
    }
    out
}

fn describe_encryption(e: &Encryption) -> String {
    let mut d = format!("age to {}", e.recipients.join(", "));
    for i in &e.identities {
        match i {
            IdentitySource::File { path } => {
                let _ = write!(d, "; identities from {} (***)", path.display());
            }
            IdentitySource::Value { identity } => {
                let _ = write!(d, "; an identity ({identity})");
            }
        }
    }
    d
}

fn settings_line(settings: &Settings) -> String {
    let list = |v: &[String], empty: &str| {
        if v.is_empty() {
            empty.to_string()
        } else {
            v.join(", ")
        }
    };
    match settings {
        Settings::Postgres(p) => format!(
            "{}, databases: {}{}",
            p.connection,
            list(&p.databases, "the connection's"),
            if p.globals { ", with globals" } else { "" }
        ),
        Settings::Keycloak(k) => format!(
            "{} ({} grant, client {}, secret {}), realms: {}",
            k.url,
            k.grant,
            k.client_id,
            k.secret,
            list(&k.realms, "all")
        ),
        Settings::Vault(v) => format!(
            "{} ({}, {} auth{}), mounts: {}",
            v.address,
            match v.mode {
                VaultMode::Kv => "kv",
                VaultMode::Snapshot => "snapshot",
            },
            v.auth,
            v.secret
                .as_ref()
                .map(|s| format!(" {s}"))
                .unwrap_or_default(),
            list(&v.mounts, "all")
        ),
        Settings::Infisical(i) => format!(
            "{} (client {}, secret {}), project {}, environments: {}",
            i.url,
            i.client_id,
            i.client_secret,
            i.project,
            list(&i.environments, "all")
        ),
        Settings::Helm(h) => format!(
            "namespace {}, releases: {}",
            h.namespace,
            list(&h.releases, "all")
        ),
        Settings::Crds(c) => format!(
            "groups {}, kinds: {}, namespaces: {}, CRDs {}, referenced secrets {}, {}",
            c.groups.join(", "),
            list(&c.kinds, "all"),
            list(&c.namespaces, "all"),
            if c.include_crds {
                "included"
            } else {
                "left out"
            },
            if c.referenced_secrets {
                "included"
            } else {
                "left out"
            },
            c.layout
        ),
        Settings::Grafana(g) => format!(
            "{} ({} auth{}, secret {})",
            g.url,
            g.auth,
            g.user
                .as_ref()
                .map(|u| format!(" as {u}"))
                .unwrap_or_default(),
            g.secret
        ),
    }
}

//! The PostgreSQL client programs stoa-backup runs, and their versions.

use std::path::Path;

use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::process::{run_collect, CommandSpec};

use super::COMPONENT;

/// Paths (or names looked up in `PATH`) of the PostgreSQL client programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTools {
    /// `pg_dump`.
    pub pg_dump: String,
    /// `pg_dumpall` (for the globals artifact).
    pub pg_dumpall: String,
    /// `pg_restore`.
    pub pg_restore: String,
}

impl Default for PgTools {
    fn default() -> Self {
        PgTools {
            pg_dump: "pg_dump".to_string(),
            pg_dumpall: "pg_dumpall".to_string(),
            pg_restore: "pg_restore".to_string(),
        }
    }
}

impl PgTools {
    /// The programs in `dir` (e.g. `/usr/lib/postgresql/16/bin`).
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        let d = dir.as_ref();
        let p = |n: &str| d.join(n).display().to_string();
        PgTools {
            pg_dump: p("pg_dump"),
            pg_dumpall: p("pg_dumpall"),
            pg_restore: p("pg_restore"),
        }
    }
}

/// A client or server version: the full string and the major number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgVersion {
    /// As printed, e.g. `15.20 (Debian 15.20-0+deb12u1)`.
    pub full: String,
    /// Major version: 15 for 15.x, 9 for 9.6.
    pub major: u32,
}

/// Parses the output of `pg_dump --version` (`pg_dump (PostgreSQL) 15.20 (Debian …)`).
pub fn parse_tool_version(output: &str) -> Option<PgVersion> {
    let line = output.lines().next()?.trim();
    let rest = match line.find(')') {
        Some(i) => line[i + 1..].trim(),
        None => line.split_whitespace().last()?,
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().ok()?;
    Some(PgVersion {
        full: rest.to_string(),
        major,
    })
}

/// Runs `program --version` and parses it. A missing program is a Config error.
pub async fn tool_version(program: &str) -> Result<PgVersion> {
    let spec = CommandSpec::new(program).arg("--version");
    let (_, out) = run_collect(&spec, COMPONENT, None, 4096).await.map_err(|e| {
        if e.kind() == ErrorKind::Config {
            e.with_operation("preflight").with_hint(format!(
                    "install the PostgreSQL client tools (postgresql-client) or configure the full path of '{program}'"
                ))
        } else {
            e.or_operation("preflight")
        }
    })?;
    let text = String::from_utf8_lossy(&out);
    parse_tool_version(&text).ok_or_else(|| {
        Error::config(format!(
            "cannot read the version of '{program}' from {:?}",
            text.trim()
        ))
        .with_component(COMPONENT)
        .with_operation("preflight")
        .with_hint("configure the path of a real PostgreSQL client program")
    })
}

/// Checks that a client tool can handle a server: its major version must be at least the
/// server's.
pub fn check_tool_for_server(
    tool: &str,
    tool_version: &PgVersion,
    server_major: u32,
) -> Result<()> {
    if tool_version.major < server_major {
        return Err(Error::config(format!(
            "{tool} {} is older than server {server_major}: install postgresql-client-{server_major}",
            tool_version.major
        ))
        .with_component(COMPONENT)
        .with_operation("preflight")
        .with_hint(format!(
            "{tool} refuses servers newer than itself; install postgresql-client-{server_major} (or newer) and point stoa-backup at its bin directory"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_parsed() {
        let v =
            parse_tool_version("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n").unwrap();
        assert_eq!(v.major, 15);
        assert_eq!(v.full, "15.20 (Debian 15.20-0+deb12u1)");
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 9.6.24")
                .unwrap()
                .major,
            9
        );
        assert_eq!(
            parse_tool_version("pg_restore (PostgreSQL) 17beta1")
                .unwrap()
                .major,
            17
        );
        assert!(parse_tool_version("hello").is_none());
    }

    #[test]
    fn old_pg_dump_is_refused_with_the_package_to_install() {
        let v = parse_tool_version("pg_dump (PostgreSQL) 13.1").unwrap();
        let err = check_tool_for_server("pg_dump", &v, 15).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string()
                .contains("pg_dump 13 is older than server 15: install postgresql-client-15"),
            "{err}"
        );
        assert!(check_tool_for_server("pg_dump", &v, 13).is_ok());
    }
}

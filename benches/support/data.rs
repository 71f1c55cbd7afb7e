//! The benchmark databases: STOA-like rows (`stoa_like.sql`) filled up to a raw dump size,
//! reused by later runs, and the few administrative statements the cases need.

use std::time::Instant;

use stoa_backup::providers::postgres::PgConnection;
use tokio::runtime::Runtime;
use tokio_postgres::Client;

use crate::shell;

const MIB: u64 = 1024 * 1024;
/// Creates the `stoa` tables and `stoa_bench.fill(first_unit, last_unit)`.
const STOA_LIKE_SQL: &str = include_str!("stoa_like.sql");
/// What a unit roughly adds to the raw dump; only sizes the calibration fill.
const NOMINAL_UNIT_BYTES: u64 = 5_800_000;
/// Units the calibration fills before measuring (fewer for small databases).
const CALIBRATION_UNITS: u64 = 10;
/// Units per `fill` statement (about 6 s each).
const FILL_BATCH: u64 = 20;
/// Indexes a real STOA database has beside its keys, built after the fill (faster) and
/// rebuilt by every restore, which is what `pg_restore -j` parallelises.
const SECONDARY_INDEXES_SQL: &str = "
    CREATE INDEX audit_events_tenant_at ON stoa.audit_events (tenant_id, at);
    CREATE INDEX subscriptions_consumer ON stoa.subscriptions (consumer_id);
    CREATE INDEX subscriptions_api ON stoa.subscriptions (api_id);
    CREATE INDEX apis_tenant ON stoa.apis (tenant_id);
    CREATE INDEX consumers_tenant ON stoa.consumers (tenant_id);";
/// Present once a database is complete; one without it is generated again.
const DONE_MARKER: &str = "stoa_bench.done";

/// The benchmark server, reached from synchronous code.
pub struct Server {
    rt: Runtime,
    pub conn: PgConnection,
    admin: Client,
}

/// A connection to one database of the server.
pub struct Session<'a> {
    rt: &'a Runtime,
    client: Client,
}

impl Server {
    pub fn connect(url: &str) -> Server {
        let conn = PgConnection::from_url(url).expect("STOA_BENCH_DATABASE_URL is a valid URL");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let admin = rt
            .block_on(conn.connect(conn.get_dbname()))
            .unwrap_or_else(|e| panic!("connect to {}: {e}", conn.redacted_url(conn.get_dbname())));
        Server { rt, conn, admin }
    }

    pub fn session(&self, db: &str) -> Session<'_> {
        let client = self
            .rt
            .block_on(self.conn.connect(db))
            .unwrap_or_else(|e| panic!("connect to database {db}: {e}"));
        Session {
            rt: &self.rt,
            client,
        }
    }

    fn admin_sql(&self, sql: &str) {
        self.rt
            .block_on(self.admin.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn database_exists(&self, name: &str) -> bool {
        let rows = self.rt.block_on(
            self.admin
                .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]),
        );
        !rows.expect("query pg_database").is_empty()
    }

    pub fn create_database(&self, name: &str) {
        self.admin_sql(&format!("CREATE DATABASE \"{name}\""));
    }

    pub fn drop_database(&self, name: &str) {
        self.admin_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    }

    /// Writes out what a restore left in shared buffers and WAL, so the next case does not
    /// pay for it. Best effort: it needs superuser or `pg_checkpoint`.
    pub fn checkpoint(&self) {
        if let Err(e) = self.rt.block_on(self.admin.batch_execute("CHECKPOINT")) {
            eprintln!("note: CHECKPOINT failed ({e}); a restore's writes may slow the next case");
        }
    }
}

impl Session<'_> {
    pub fn sql(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{}: {e}", sql.trim()));
    }

    fn flag(&self, sql: &str) -> bool {
        let row = self.rt.block_on(self.client.query_one(sql, &[]));
        row.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }

    fn fill(&self, first: u64, last: u64) {
        self.sql(&format!("SELECT stoa_bench.fill({first}, {last})"));
    }
}

/// The database of about `mb` MiB of raw dump, `stoa_bench_real_<mb>mb`: reused when a
/// previous run completed it, generated (again) otherwise.
pub fn ensure_database(server: &Server, mb: u64) -> String {
    let name = format!("stoa_bench_real_{mb}mb");
    if server.database_exists(&name) {
        let complete = server
            .session(&name)
            .flag(&format!("SELECT to_regclass('{DONE_MARKER}') IS NOT NULL"));
        if complete {
            println!("reusing database {name}");
            return name;
        }
        println!("database {name} is incomplete (no {DONE_MARKER}): generating it again");
        server.drop_database(&name);
    }
    generate(server, &name, mb * MIB);
    name
}

/// Fills a few units, measures their raw dump, then fills as many more as the target needs.
fn generate(server: &Server, name: &str, target_bytes: u64) {
    let t0 = Instant::now();
    server.create_database(name);
    let db = server.session(name);
    db.sql(STOA_LIKE_SQL);
    let calibration = (target_bytes / NOMINAL_UNIT_BYTES / 2).clamp(1, CALIBRATION_UNITS);
    db.fill(1, calibration);
    let per_unit = (shell::raw_dump_size(&server.conn, name) / calibration).max(1);
    let units = target_bytes.div_ceil(per_unit).max(calibration);
    eprintln!(
        "generating {name}: {units} units of about {:.1} MiB of raw dump",
        per_unit as f64 / MIB as f64
    );
    let mut next = calibration + 1;
    while next <= units {
        let last = (next + FILL_BATCH - 1).min(units);
        db.fill(next, last);
        eprintln!("  {last}/{units} units ({:.0?})", t0.elapsed());
        next = last + 1;
    }
    db.sql(SECONDARY_INDEXES_SQL);
    db.sql("ANALYZE");
    db.sql(&format!("CREATE TABLE {DONE_MARKER} ()"));
    println!(
        "generated database {name} ({units} units) in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

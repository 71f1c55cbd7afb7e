//! The data offsets a parallel restore's spool file gets: the same as pg_dump records when
//! it writes a file itself.

use stoa_backup::providers::postgres::spool_index::{write_patches, SpoolIndex};
use stoa_backup_test_support::TestDatabase;

/// A dump of `db` by the real pg_dump: to `file`, or to a pipe (returned) when `None`.
async fn pg_dump(db: &TestDatabase, file: Option<&std::path::Path>) -> Vec<u8> {
    let mut cmd = tokio::process::Command::new("pg_dump");
    cmd.args([
        "--format=custom",
        "--compress=0",
        "--no-owner",
        "--no-privileges",
    ])
    .arg(format!("--dbname={}", db.url()));
    if let Some(f) = file {
        cmd.arg(format!("--file={}", f.display()));
    }
    let out = cmd.output().await.expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A new test database with every kind of data block: tables with rows (`rows` of them in
/// `a`, each longer than one chunk), one without, and large objects.
async fn database_with_every_block_kind(prefix: &str, rows: u32) -> TestDatabase {
    let db = TestDatabase::create(prefix).await;
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE TABLE a (id int PRIMARY KEY, body text);
             INSERT INTO a SELECT g, repeat(md5(g::text), 40) FROM generate_series(1, {rows}) g;
             CREATE TABLE b (id int, note text);
             INSERT INTO b VALUES (1, 'naïve ✓'), (2, E'two\\nlines');
             CREATE TABLE empty_one (id int);
             SELECT lo_from_bytea(0, decode(repeat('00ff', 70000), 'hex'));
             SELECT lo_from_bytea(0, 'small');"
        ))
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn a_spooled_dump_gets_the_offsets_pg_dump_writes_into_a_file() {
    let db = database_with_every_block_kind("pgspool", 5000).await;
    let tmp = tempfile::tempdir().unwrap();
    let own = tmp.path().join("own.dump");
    pg_dump(&db, Some(&own)).await;
    let own = std::fs::read(&own).unwrap();
    let streamed = pg_dump(&db, None).await;
    assert_eq!(own.len(), streamed.len(), "the same dump, written two ways");

    // Fed in uneven pieces, as a network stream arrives.
    let mut index = SpoolIndex::default();
    let mut rest: &[u8] = &streamed;
    let mut size = 1;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        index.feed(&rest[..n]);
        rest = &rest[n..];
        size = size * 3 % 70_001 + 1;
    }
    let patches = index.patches().expect("the dump is indexed");
    // The blocks tile the data section, each closed, from the TOC's end to the dump's.
    let toc_end = index.toc_end().expect("the TOC is read");
    let entries = index.entries().expect("the TOC is read");
    assert!(
        entries.iter().filter(|(_, d)| d == "TABLE DATA").count() >= 3,
        "{entries:?}"
    );
    let blocks = index.blocks();
    assert_eq!(blocks.first().map(|b| b.start), Some(toc_end));
    for pair in blocks.windows(2) {
        assert_eq!(pair[0].end, Some(pair[1].start), "{blocks:?}");
    }
    assert_eq!(
        blocks.last().and_then(|b| b.end),
        Some(streamed.len() as u64)
    );
    for b in blocks {
        assert!(
            matches!(streamed[b.start as usize], 1 | 3),
            "{b:?}: a block type byte (data or large objects)"
        );
        assert!(entries.iter().any(|(id, _)| *id == b.dump_id), "{b:?}");
    }
    // a, b, empty_one, the large objects: every entry with data.
    assert!(patches.len() >= 4, "{patches:?}");
    for (at, bytes) in &patches {
        let at = *at as usize;
        assert_eq!(bytes[0], 2, "offset set");
        assert_eq!(
            &own[at..at + bytes.len()],
            bytes.as_slice(),
            "offset at {at}"
        );
        assert_eq!(streamed[at], 1, "pg_dump to a pipe left it unset");
    }

    let spool = tmp.path().join("spool.dump");
    std::fs::write(&spool, &streamed).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&spool)
        .unwrap();
    write_patches(&file, &patches).unwrap();
    drop(file);
    let patched = std::fs::read(&spool).unwrap();
    let differing = own.iter().zip(&patched).filter(|(a, b)| a != b).count();
    // Only the creation time in the header may differ (the two dumps ran seconds apart).
    assert!(
        differing <= 8,
        "{differing} bytes differ from pg_dump's own file"
    );
    db.drop_db().await;
}

#[test]
fn what_is_not_a_whole_dump_is_not_indexed() {
    let mut index = SpoolIndex::default();
    index.feed(b"-- PostgreSQL database dump\n");
    assert!(index.patches().is_err());
}

/// `pg_restore --file=/dev/null` reading `dump` from its standard input, as the archive
/// check used to: whether it read the dump to its end without an error.
async fn pg_restore_reads(dump: &[u8]) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("pg_restore")
        .arg("--file=/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run pg_restore");
    let mut stdin = child.stdin.take().unwrap();
    // pg_restore may stop reading early on a damaged dump: a broken pipe is its verdict
    // (its exit status says it); any other write error is the test's own failure.
    if let Err(e) = stdin.write_all(dump).await {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(stdin);
    child.wait().await.unwrap().success()
}

fn walk(dump: &[u8]) -> Result<stoa_backup::providers::postgres::spool_index::BlockCheck, String> {
    let mut index = SpoolIndex::default();
    for piece in dump.chunks(4093) {
        index.feed(piece);
    }
    index.check_blocks()
}

/// The archive check walks the data blocks of an uncompressed dump in process instead of
/// piping the whole dump through `pg_restore`: on the same dumps — whole, cut at every
/// block boundary, inside blocks and in the TOC, with a block's type or a chunk length
/// damaged — it says what pg_restore says.
#[tokio::test]
async fn the_block_walk_agrees_with_pg_restore_reading_the_stream() {
    let db = database_with_every_block_kind("pgwalk", 2000).await;
    let dump = pg_dump(&db, None).await;
    let whole = walk(&dump).expect("the whole dump walks");
    assert_eq!(whole.bytes, dump.len() as u64);
    assert!(
        whole.blocks >= 4 && whole.entries_with_data >= 4,
        "{whole:?}"
    );
    assert!(pg_restore_reads(&dump).await);

    let mut index = SpoolIndex::default();
    index.feed(&dump);
    let toc_end = index.toc_end().unwrap() as usize;
    let mut cuts: Vec<usize> = vec![10, toc_end / 2, toc_end];
    for b in index.blocks() {
        let start = b.start as usize;
        let end = b.end.unwrap() as usize;
        cuts.extend([start, start + 1, start + 3, (start + end) / 2, end - 1, end]);
    }
    for i in 1..20 {
        cuts.push(toc_end + (dump.len() - toc_end) * i / 20);
    }
    cuts.retain(|&c| c < dump.len());
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        let ours = walk(&dump[..cut]);
        assert!(
            ours.is_err(),
            "a dump cut at {cut} of {} walked",
            dump.len()
        );
        assert!(
            !pg_restore_reads(&dump[..cut]).await,
            "pg_restore read the dump cut at {cut}"
        );
    }

    // A block whose type byte is not a block type, and a chunk length gone negative.
    // In the longest block (a table with rows: its first chunk length is not zero).
    let longest = index
        .blocks()
        .iter()
        .max_by_key(|b| b.end.unwrap() - b.start)
        .unwrap();
    let first = longest.start as usize;
    let mut bad_type = dump.clone();
    bad_type[first] = 9;
    let mut bad_len = dump.clone();
    bad_len[first + 6] = 1; // the first chunk length's sign byte
    for (what, damaged) in [("block type", bad_type), ("chunk length", bad_len)] {
        assert!(walk(&damaged).is_err(), "{what}");
        assert!(!pg_restore_reads(&damaged).await, "{what}");
    }
    db.drop_db().await;
}

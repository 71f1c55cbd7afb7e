//! Reading a kc.sh archive (a tar of the files `kc.sh export --dir` wrote) as it streams
//! past, and checking it: the realm file and an unbroken users-file sequence, and every file
//! and user recorded at backup time.

use std::collections::BTreeSet;
use std::io::Read;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use stoa_backup_core::{ByteStream, Error, Result};

use crate::keycloak::facts::{ExportMode, KcShFacts};

/// One file of a kc.sh export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileInfo {
    pub(super) name: String,
    pub(super) users: u64,
    pub(super) service_accounts: u64,
}

/// Reads a tar of kc.sh files, counting users per JSON file.
pub(super) fn parse_tar(reader: impl Read) -> std::io::Result<Vec<FileInfo>> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().to_string();
        let name = path.trim_start_matches("./").to_string();
        let (mut users, mut sas) = (0, 0);
        if name.ends_with(".json") {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf)?;
            let v: Value = serde_json::from_slice(&buf).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{name}: {e}"))
            })?;
            for u in v["users"].as_array().into_iter().flatten() {
                if u.get("serviceAccountClientId").is_some() {
                    sas += 1;
                } else {
                    users += 1;
                }
            }
        }
        out.push(FileInfo {
            name,
            users,
            service_accounts: sas,
        });
    }
    // Read to the end so the writer never blocks on a full pipe.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())?;
    Ok(out)
}

/// How many chunks the parser may lag behind the stream: the tee waits beyond that, so a
/// slow parser slows the stream instead of buffering the archive in memory.
const PARSER_LAG_CHUNKS: usize = 8;

/// A blocking reader over chunks sent from async code.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            // On the parser's blocking thread, never on the runtime.
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// The files of an archive read by [`tee`], known once its stream has ended (or was
/// dropped: then the parser sees a truncated archive).
pub(super) struct Parsed<T = Vec<FileInfo>>(tokio::task::JoinHandle<std::io::Result<T>>);

impl Parsed {
    /// The files, or an integrity error when the bytes were not a readable kc.sh tar.
    pub(super) async fn files(self) -> Result<Vec<FileInfo>> {
        self.0
            .await
            .map_err(|e| Error::internal(format!("tar parser: {e}")))?
            .map_err(|e| Error::integrity(format!("the kc.sh archive is not a readable tar: {e}")))
    }
}

/// Passes `inner` through unchanged while a parser on a blocking thread reads a copy.
pub(super) fn tee(inner: ByteStream) -> (ByteStream, Parsed) {
    tee_with(inner, parse_tar)
}

/// [`tee`] with any blocking reader of the copy.
fn tee_with<T: Send + 'static>(
    inner: ByteStream,
    parse: impl FnOnce(ChannelReader) -> std::io::Result<T> + Send + 'static,
) -> (ByteStream, Parsed<T>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(PARSER_LAG_CHUNKS);
    let parser = tokio::task::spawn_blocking(move || {
        parse(ChannelReader {
            rx,
            cur: Bytes::new(),
        })
    });
    let stream = futures::stream::unfold((inner, Some(tx)), |(mut inner, mut tx)| async move {
        match inner.next().await {
            Some(Ok(b)) => {
                // The parser only stops early on a broken archive, which it reports: then
                // the copy is no longer sent.
                if let Some(t) = &tx {
                    if t.send(b.clone()).await.is_err() {
                        tx = None;
                    }
                }
                Some((Ok(b), (inner, tx)))
            }
            Some(Err(e)) => {
                tx.take();
                Some((Err(e), (inner, tx)))
            }
            None => {
                tx.take();
                None
            }
        }
    });
    (Box::pin(stream), Parsed(parser))
}

/// Reads a whole archive: its files, or the stream's error, or an integrity error.
pub(super) async fn parse_stream(s: ByteStream) -> Result<Vec<FileInfo>> {
    let (mut s, parsed) = tee(s);
    while let Some(chunk) = s.next().await {
        if let Err(e) = chunk {
            drop(s);
            // The parser saw a truncated archive: the stream's error says why.
            let _ = parsed.files().await;
            return Err(e);
        }
    }
    drop(s);
    parsed.files().await
}

/// Problems with the set of files: realm file missing, users files not contiguous.
pub(super) fn check_files(realm: &str, files: &[FileInfo]) -> Vec<String> {
    let mut problems = Vec::new();
    let realm_file = format!("{realm}-realm.json");
    if !files.iter().any(|f| f.name == realm_file) {
        problems.push(format!("{realm_file} is missing"));
    }
    for prefix in [
        format!("{realm}-users-"),
        format!("{realm}-federated-users-"),
    ] {
        let mut idx: Vec<u64> = files
            .iter()
            .filter_map(|f| {
                f.name
                    .strip_prefix(&prefix)?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        idx.sort_unstable();
        for (want, got) in idx.iter().enumerate() {
            if *got != want as u64 {
                problems.push(format!("{prefix}{want}.json is missing"));
                break;
            }
        }
    }
    problems
}

/// Problems of `files` against the export recorded in `facts`: [`check_files`], then every
/// recorded file present and no other, and the users (per file and in total) and
/// service-account users counted at backup time. Facts an older manifest lacks are not
/// checked.
pub(super) fn check_against(facts: &KcShFacts, files: &[FileInfo]) -> Vec<String> {
    let mut problems = check_files(&facts.realm, files);
    let found: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
    if let Some(recorded) = &facts.files {
        for want in recorded {
            let problem = format!("{want} is missing");
            if !found.contains(want.as_str()) && !problems.contains(&problem) {
                problems.push(problem);
            }
        }
        let recorded: BTreeSet<&str> = recorded.iter().map(String::as_str).collect();
        for extra in found.difference(&recorded) {
            problems.push(format!("{extra} was not in the export"));
        }
    }
    if let Some(per_file) = &facts.users_per_file_found {
        for f in files {
            match per_file.get(&f.name) {
                Some(n) if *n != f.users => {
                    problems.push(format!("{} holds {} users, {n} recorded", f.name, f.users))
                }
                _ => {}
            }
        }
    }
    let users: u64 = files.iter().map(|f| f.users).sum();
    if let Some(expected) = facts.users.filter(|n| *n != users) {
        problems.push(format!("{users} users in the archive, {expected} recorded"));
    }
    let sas: u64 = files.iter().map(|f| f.service_accounts).sum();
    if let Some(expected) = facts.service_account_users.filter(|n| *n != sas) {
        problems.push(format!(
            "{sas} service-account users in the archive, {expected} recorded"
        ));
    }
    problems
}

/// The facts of an export of `realm` made of `files` (the users options come from the plan).
pub(super) fn facts_of(realm: &str, files: &[FileInfo]) -> KcShFacts {
    KcShFacts {
        realm: realm.to_string(),
        mode: ExportMode::KcSh,
        users_mode: None,
        users_per_file: None,
        files: Some(files.iter().map(|x| x.name.clone()).collect()),
        users_per_file_found: Some(files.iter().map(|x| (x.name.clone(), x.users)).collect()),
        users: Some(files.iter().map(|x| x.users).sum()),
        service_account_users: Some(files.iter().map(|x| x.service_accounts).sum()),
    }
}

#[cfg(test)]
mod tests {
    /// A parser that stops reading must hold the stream back, not let it buffer the
    /// archive in memory.
    #[tokio::test]
    async fn a_slow_parser_holds_the_stream_back_instead_of_buffering_it() {
        use futures::StreamExt as _;
        use std::io::Read as _;
        let chunks = (0..200).map(|i| Ok(bytes::Bytes::from(vec![i as u8; 1024])));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (stream, parsed) = super::tee_with(
            Box::pin(futures::stream::iter(chunks)),
            move |mut reader| {
                let mut first = [0u8; 1];
                reader.read_exact(&mut first)?;
                // Stalls until the test has seen how far the stream got.
                release_rx.recv().ok();
                std::io::copy(&mut reader, &mut std::io::sink())
            },
        );
        let mut stream = stream.fuse();
        let mut passed = 0;
        // Chunks pass until the stream waits for the stalled parser (or, buffering, ends).
        while let Ok(Some(_)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await
        {
            passed += 1;
        }
        assert!(
            passed < 50, // the lag allowed is a handful of chunks, never the archive
            "{passed} of 200 chunks passed a stalled parser: the copy is buffered"
        );
        release_tx.send(()).unwrap();
        while stream.next().await.is_some() {
            passed += 1;
        }
        assert_eq!(passed, 200);
        assert_eq!(parsed.0.await.unwrap().unwrap(), 200 * 1024 - 1);
    }

    use super::*;
    use serde_json::json;

    fn tar_of(files: &[(&str, Value)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, v) in files {
            let data = serde_json::to_vec(v).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("./{name}"), data.as_slice())
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn parses_and_checks_files() {
        let t = tar_of(&[
            ("stoa-realm.json", json!({"realm": "stoa"})),
            (
                "stoa-users-0.json",
                json!({"users": [{"username": "a"}, {"username": "b"}]}),
            ),
            (
                "stoa-users-2.json",
                json!({"users": [{"username": "c", "serviceAccountClientId": "x"}]}),
            ),
        ]);
        let files = parse_tar(t.as_slice()).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(files[1].users, 2);
        assert_eq!(files[2].service_accounts, 1);
        assert_eq!(
            check_files("stoa", &files),
            ["stoa-users-1.json is missing"]
        );
        assert_eq!(
            check_files("other", &files),
            ["other-realm.json is missing"]
        );
        let f = facts_of("stoa", &files);
        assert_eq!(f.users, Some(2));
    }

    fn file(name: &str, users: u64) -> FileInfo {
        FileInfo {
            name: name.into(),
            users,
            service_accounts: 0,
        }
    }

    #[test]
    fn the_recorded_facts_catch_what_the_numbering_cannot() {
        let exported = [
            file("stoa-realm.json", 0),
            file("stoa-users-0.json", 50),
            file("stoa-users-1.json", 2),
        ];
        let facts = facts_of("stoa", &exported);
        assert!(check_against(&facts, &exported).is_empty());
        // The last users file gone: no gap in the numbering, only the facts tell.
        let without_last = &exported[..2];
        assert!(check_files("stoa", without_last).is_empty());
        assert_eq!(
            check_against(&facts, without_last),
            [
                "stoa-users-1.json is missing",
                "50 users in the archive, 52 recorded"
            ]
        );
        // A file emptied, and one that was never exported.
        let edited = [
            file("stoa-realm.json", 0),
            file("stoa-users-0.json", 50),
            file("stoa-users-1.json", 0),
            file("extra.json", 0),
        ];
        assert_eq!(
            check_against(&facts, &edited),
            [
                "extra.json was not in the export",
                "stoa-users-1.json holds 0 users, 2 recorded",
                "50 users in the archive, 52 recorded"
            ]
        );
        // A manifest without file facts: only the numbering is checked.
        let older = KcShFacts {
            files: None,
            users_per_file_found: None,
            users: None,
            service_account_users: None,
            ..facts
        };
        assert!(check_against(&older, without_last).is_empty());
    }
}

//! The PostgreSQL engine against a real server started for the test (scripts/pg-temp): the
//! same reads and writes as RocksDB's, the schema made once, and leadership fencing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use records::{
    Batch, BytesBatch, BytesChange, Check, Db, Envelope, Postgres, RecordError, Versioned,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Thing {
    name: String,
    n: u64,
}
impl Versioned for Thing {
    const ENVELOPE: Envelope = Envelope::Nested;
    const VERSION: u32 = 1;
}

/// A server in a temp folder, stopped when dropped.
struct Server {
    dir: tempfile::TempDir,
    url: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-temp")
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("scripts/pg-temp runs");
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // Made before the check, so that a server that started is stopped with it.
        let server = Server { dir, url };
        assert!(
            out.status.success(),
            "pg-temp start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server
    }

    /// Runs SQL as the test, apart from Koala's connections.
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([&self.url, "-Atc", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// Ends every session of Koala's (not the test's own psql).
    fn end_sessions(&self, which: &str) {
        self.sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND datname = 'koala' AND {which}"
        ));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn thing(name: &str, n: u64) -> Thing {
    Thing {
        name: name.to_owned(),
        n,
    }
}

fn put(db: &Db, key: &str) -> Result<(), RecordError> {
    let mut b = Batch::new();
    b.put(key, &thing(key, 1));
    db.write(b)
}

#[test]
fn records_read_back_in_rocksdb_order_and_stores_stay_apart() {
    let server = Server::start();
    let pg = Postgres::connect(&server.url).unwrap();
    let clc = Db::on_postgres(&pg, "clc");
    let other = Db::on_postgres(&pg, "identity");
    let mut batch = Batch::new();
    // Keys with LIKE's special characters and non-ASCII text: byte order, literal prefixes.
    for key in ["a/b", "a/a", "a/\u{e9}", "a%/x", "a_/y", "b/1", "a/"] {
        batch.put(key, &thing(key, 1));
    }
    clc.write(batch).unwrap();
    let mut batch = Batch::new();
    batch.put("a/z", &thing("elsewhere", 2));
    other.write(batch).unwrap();

    let keys: Vec<String> = clc
        .scan::<Thing>("a/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["a/", "a/a", "a/b", "a/\u{e9}"]);
    assert_eq!(clc.keys_after("a%/").unwrap(), ["x"]);
    assert_eq!(clc.keys_after("a_/").unwrap(), ["y"]);
    assert_eq!(clc.get::<Thing>("b/1").unwrap(), Some(thing("b/1", 1)));
    assert!(clc.contains("a/a").unwrap());
    assert!(!clc.contains("a/z").unwrap());
    assert_eq!(
        other.get::<Thing>("a/z").unwrap(),
        Some(thing("elsewhere", 2))
    );

    // What was read is kept, and every write through the store replaces what was kept.
    assert_eq!(clc.get::<Thing>("a/b").unwrap(), Some(thing("a/b", 1)));
    let mut batch = Batch::new();
    batch.put("a/b", &thing("a/b", 8));
    clc.write(batch).unwrap();
    assert_eq!(clc.get::<Thing>("a/b").unwrap(), Some(thing("a/b", 8)));
    let mut batch = Batch::new();
    batch.delete("b/1");
    clc.write(batch).unwrap();
    assert_eq!(clc.get::<Thing>("b/1").unwrap(), None);
    assert!(!clc.contains("b/1").unwrap());

    // A batch is applied in order, atomically: a put then a delete of one key removes it.
    let mut batch = Batch::new();
    batch.put("c/1", &thing("c", 3));
    batch.delete("c/1");
    batch.delete("a/a");
    batch.put("a/b", &thing("a/b", 7));
    clc.write(batch).unwrap();
    assert_eq!(clc.get::<Thing>("c/1").unwrap(), None);
    assert_eq!(clc.get::<Thing>("a/a").unwrap(), None);
    assert_eq!(clc.get::<Thing>("a/b").unwrap(), Some(thing("a/b", 7)));

    // The records are JSON an operator can query; a NUL in a string (which jsonb refuses) is
    // stored as RocksDB stores it.
    let mut batch = Batch::new();
    batch.put("nul", &thing("a\u{0}b", 1));
    clc.write(batch).unwrap();
    assert_eq!(clc.get::<Thing>("nul").unwrap(), Some(thing("a\u{0}b", 1)));
    assert_eq!(
        server.sql(
            "SELECT value::jsonb->'record'->>'n' FROM koala_records \
             WHERE store = 'clc' AND key = 'a/b'"
        ),
        "7"
    );

    // A second process's connection finds the schema made and the records there.
    let again = Postgres::connect(&server.url).unwrap();
    assert_eq!(
        Db::on_postgres(&again, "clc").get::<Thing>("a/b").unwrap(),
        Some(thing("a/b", 7))
    );
    assert_eq!(server.sql("SELECT version FROM koala_schema"), "2");
}

/// The sum of two little-endian i64s: a merge operator for the test.
fn add(stored: Option<&[u8]>, operand: &[u8]) -> Vec<u8> {
    let n = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("eight bytes"));
    (stored.map_or(0, n) + n(operand)).to_le_bytes().to_vec()
}

#[test]
fn binary_spaces_write_only_what_their_checks_allow() {
    let server = Server::start();
    let pg = Postgres::connect(&server.url).unwrap();
    let space = || "walrus/objects".to_owned();
    let put = |k: &[u8], v: &[u8]| BytesChange::Put(space(), k.to_vec(), v.to_vec());
    let same = |k: &[u8], v: Option<&[u8]>| Check::Same {
        space: space(),
        key: k.to_vec(),
        value: v.map(<[u8]>::to_vec),
        exclusive: true,
    };
    // Keys with 0x00 and 0xFF bytes come back in byte order, bounded.
    let write = |checks, changes| pg.bytes_write(BytesBatch { checks, changes });
    write(
        vec![same(b"b\0a", None)],
        vec![put(b"b\0a", b"1"), put(b"b\0\xff", b"2"), put(b"c", b"3")],
    )
    .unwrap();
    let keys = |upper: Option<&[u8]>| -> Vec<Vec<u8>> {
        let rows = pg.bytes_scan("walrus/objects", b"b\0", upper, 10).unwrap();
        rows.into_iter().map(|(k, _)| k).collect()
    };
    assert_eq!(
        keys(None),
        vec![b"b\0a".to_vec(), b"b\0\xff".to_vec(), b"c".to_vec()]
    );
    assert_eq!(
        keys(Some(b"b\x01")),
        vec![b"b\0a".to_vec(), b"b\0\xff".to_vec()]
    );
    // A check on what changed meanwhile writes nothing.
    let stale = write(vec![same(b"b\0a", None)], vec![put(b"d", b"4")]);
    assert!(matches!(stale, Err(RecordError::Conflict)), "{stale:?}");
    assert_eq!(pg.bytes_get("walrus/objects", b"d").unwrap(), None);
    let count = |n| Check::Count {
        space: space(),
        from: b"b\0".to_vec(),
        upper: Some(b"b\x01".to_vec()),
        count: n,
    };
    assert!(matches!(
        write(vec![count(1)], vec![]),
        Err(RecordError::Conflict)
    ));
    write(
        vec![count(2), same(b"c", Some(b"3"))],
        vec![put(b"d", b"4")],
    )
    .unwrap();
    assert_eq!(
        pg.bytes_get("walrus/objects", b"d").unwrap(),
        Some(b"4".to_vec())
    );
    // Merges of many threads at once add up.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..10 {
                    let merge = BytesChange::Merge(
                        space(),
                        b"n".to_vec(),
                        1i64.to_le_bytes().to_vec(),
                        add,
                    );
                    pg.bytes_write(BytesBatch {
                        checks: vec![],
                        changes: vec![merge],
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(
        pg.bytes_get("walrus/objects", b"n").unwrap(),
        Some(80i64.to_le_bytes().to_vec())
    );
}

#[test]
fn a_schema_newer_than_the_code_is_refused() {
    let server = Server::start();
    drop(Postgres::connect(&server.url).unwrap());
    server.sql("UPDATE koala_schema SET version = 99");
    match Postgres::connect(&server.url) {
        Err(RecordError::Newer {
            version: 99,
            known: 2,
            ..
        }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

#[test]
fn a_connection_ended_by_the_server_is_made_again() {
    let server = Server::start();
    let pg = Postgres::connect(&server.url).unwrap();
    let db = Db::on_postgres(&pg, "clc");
    put(&db, "k").unwrap();
    server.end_sessions("true");
    // The call that finds the connection closed may fail; the next one connects again.
    let answer = match db.get::<Thing>("k") {
        Ok(found) => found,
        Err(RecordError::Database(_)) => db.get::<Thing>("k").unwrap(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(answer, Some(thing("k", 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_leads_and_a_deposed_leader_writes_nothing() {
    let server = Server::start();
    let first = Postgres::connect(&server.url).unwrap();
    let second = Postgres::connect(&server.url).unwrap();
    let first_db = Db::on_postgres(&first, "clc");
    let second_db = Db::on_postgres(&second, "clc");

    let lead_first = first
        .lead("first", || panic!("nobody led before"))
        .await
        .unwrap();
    assert_eq!(lead_first.term, 1);
    put(&first_db, "by-first").unwrap();
    assert_eq!(server.sql("SELECT holder FROM koala_leader"), "first");

    // The second waits while the first leads.
    let waited = Arc::new(AtomicBool::new(false));
    let told = waited.clone();
    let waiting = tokio::spawn(async move {
        second
            .lead("second", move || told.store(true, Ordering::SeqCst))
            .await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        waited.load(Ordering::SeqCst),
        "the second was not told it waits"
    );
    assert!(!waiting.is_finished(), "the second led beside the first");

    // The first's leader session ends (its host lost, say): the second takes over, the first
    // learns it lost, and its writes are refused even on its data connection.
    let lost = tokio::spawn(lead_first.lost());
    server.sql(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
         JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND a.query NOT LIKE '%pg_advisory_lock%'",
    );
    let lead_second = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the second took over within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(lead_second.term, 2);
    tokio::time::timeout(Duration::from_secs(10), lost)
        .await
        .expect("the first learnt it lost within 10 s")
        .unwrap();
    assert!(matches!(
        put(&first_db, "late"),
        Err(RecordError::NotLeader)
    ));
    put(&second_db, "by-second").unwrap();
    assert_eq!(first_db.get::<Thing>("late").unwrap(), None);
    assert_eq!(server.sql("SELECT holder FROM koala_leader"), "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_term_was_taken_cannot_write_before_it_notices() {
    // The fence alone, without the heartbeat: the term raised under a live session (an
    // operator's or a split network's doing) stops the old leader's very next write.
    let server = Server::start();
    let pg = Postgres::connect(&server.url).unwrap();
    let db = Db::on_postgres(&pg, "clc");
    let _lead = pg.lead("old", || {}).await.unwrap();
    put(&db, "before").unwrap();
    server.sql("UPDATE koala_leader SET term = term + 1, holder = 'new'");
    assert!(matches!(put(&db, "k"), Err(RecordError::NotLeader)));
    assert_eq!(db.get::<Thing>("k").unwrap(), None);
    assert!(db.get::<Thing>("before").unwrap().is_some());
}

//! The PostgreSQL engine of [`crate::Db`], and the leadership that lets several cloud
//! controllers share one database with exactly one of them acting.
//!
//! Records keep the shape they have in RocksDB: a store name (`clc`, `identity`), a string key
//! (`instance/i-…`) and the record's JSON text, which an operator can read with SQL
//! (`SELECT value::jsonb->'record' FROM koala_records WHERE store = 'clc' AND key LIKE
//! 'instance/%'`). Text, not `jsonb`: jsonb refuses a `\u0000` a client may put in a
//! description, and the records must store whatever RocksDB stores.
//! Keys are collated as bytes (`COLLATE "C"`), so prefix scans come back in RocksDB's order.
//!
//! The stores' interface is synchronous (RocksDB calls take microseconds, and the CLC's
//! check-then-write sequences hold a lock across them), so the driver runs on a thread of its
//! own with its own runtime, and a call waits for its answer there: safe from any thread and
//! any runtime, and a loopback round trip, which is what one synced RocksDB write costs.
//!
//! **Leadership** ([`Postgres::lead`]): a session holds a PostgreSQL advisory lock; whoever
//! gets it raises the term in `koala_leader` and writes only while that term is current.
//! Every write runs in a transaction that first reads the term `FOR SHARE`, so once a new
//! leader has raised it, a deposed one (a process paused past its session, say) can write
//! nothing more: fencing by the database itself, not by timing. A lost session ends the
//! leadership at once ([`Leadership::lost`]); the CLC then stops and a standby takes over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::RecordError;

/// The schema, one entry per version: entry `n` takes a database at version `n` to `n + 1`.
/// Applied in order at connect, in one transaction, under [`MIGRATE_LOCK`]. Never edit an
/// entry once released: add one.
const MIGRATIONS: &[&str] = &[
    // 1: the records of every store, and the leader's term.
    r#"
    CREATE TABLE koala_records (
        store text NOT NULL,
        key text COLLATE "C" NOT NULL,
        value text NOT NULL,
        PRIMARY KEY (store, key)
    );
    CREATE TABLE koala_leader (
        id integer PRIMARY KEY CHECK (id = 1),
        term bigint NOT NULL,
        holder text NOT NULL,
        since timestamptz NOT NULL
    );
    INSERT INTO koala_leader VALUES (1, 0, '', now());
    "#,
    // 2: binary key spaces (Walrus' records, shared by its front ends).
    r#"
    CREATE TABLE koala_bytes (
        space text NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (space, key)
    );
    "#,
];

/// The advisory lock that serializes migrations of concurrently starting processes.
const MIGRATE_LOCK: i64 = 0x4b6f_616c_614d; // "KoalaM"
/// The advisory lock whose holder leads.
const LEADER_LOCK: i64 = 0x4b6f_616c_614c; // "KoalaL"
/// The term of a process that has never led: its writes are not fenced (tools, tests, a
/// single CLC that does not ask to lead).
const UNFENCED: u64 = 0;
/// The term of a process whose leadership was lost: every write is refused.
const LOST: u64 = u64::MAX;
/// How often the leader's session is checked, and how long a check may take.
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// A change of a batch, applied in order.
pub(crate) enum Change {
    /// Store the JSON text under the key.
    Put(String, String),
    /// Remove the key.
    Delete(String),
}

/// What the driver's thread is asked to do.
enum Request {
    Get {
        store: String,
        key: String,
        reply: std_mpsc::SyncSender<Result<Option<String>, RecordError>>,
    },
    Scan {
        store: String,
        prefix: String,
        keys_only: bool,
        reply: std_mpsc::SyncSender<Result<Vec<(String, String)>, RecordError>>,
    },
    Write {
        store: String,
        changes: Vec<Change>,
        reply: std_mpsc::SyncSender<Result<(), RecordError>>,
    },
    Lead {
        holder: String,
        waiting: oneshot::Sender<()>,
        reply: oneshot::Sender<Result<Leadership, RecordError>>,
    },
    BytesGet {
        space: String,
        key: Vec<u8>,
        reply: std_mpsc::SyncSender<Result<Option<Vec<u8>>, RecordError>>,
    },
    BytesScan {
        space: String,
        from: Vec<u8>,
        upper: Option<Vec<u8>>,
        limit: i64,
        reply: std_mpsc::SyncSender<Result<Vec<Pair>, RecordError>>,
    },
    BytesWrite {
        batch: BytesBatch,
        reply: std_mpsc::SyncSender<Result<(), RecordError>>,
    },
}

/// A binary key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Combines a key's stored value (if any) with an operand: how a [`BytesChange::Merge`]
/// changes a value, computed here inside the writing transaction with the row locked.
pub type MergeFn = fn(Option<&[u8]>, &[u8]) -> Vec<u8>;

/// What must hold when a [`BytesBatch`] is written, checked inside its transaction before
/// any change, each key checked locked (an advisory lock standing for it, present or not)
/// until it commits. A check that fails writes nothing
/// and answers [`RecordError::Conflict`]: the writer read something another process has
/// changed since, and decides again.
pub enum Check {
    /// The key holds `value` (`None`: is absent). It is locked shared (batches that check
    /// it shared go on together) or, when `exclusive`, alone.
    Same {
        /// The key space.
        space: String,
        /// The key.
        key: Vec<u8>,
        /// What it must hold.
        value: Option<Vec<u8>>,
        /// Whether the row is locked alone rather than shared.
        exclusive: bool,
    },
    /// Exactly `count` keys lie in `[from, upper)` (`upper` `None`: to the end).
    Count {
        /// The key space.
        space: String,
        /// The first key of the range.
        from: Vec<u8>,
        /// Past the range's last key.
        upper: Option<Vec<u8>>,
        /// How many keys it must hold.
        count: i64,
    },
}

/// A change of a [`BytesBatch`].
pub enum BytesChange {
    /// Store the value under the key.
    Put(String, Vec<u8>, Vec<u8>),
    /// Remove the key.
    Delete(String, Vec<u8>),
    /// Replace the key's value by the merge of it with the operand.
    Merge(String, Vec<u8>, Vec<u8>, MergeFn),
}

/// Checks and changes written in one transaction, or not at all.
#[derive(Default)]
pub struct BytesBatch {
    /// What must hold first.
    pub checks: Vec<Check>,
    /// What is written then, in order.
    pub changes: Vec<BytesChange>,
}

/// A connection to the cloud's PostgreSQL database. Cheap to clone; every clone shares one
/// connection and one leadership.
#[derive(Clone)]
pub struct Postgres {
    requests: mpsc::UnboundedSender<Request>,
    /// The database, named for diagnostics without its password.
    name: Arc<str>,
}

/// The leadership of this process, from [`Postgres::lead`].
pub struct Leadership {
    /// The term this process leads in.
    pub term: u64,
    lost: watch::Receiver<bool>,
}

impl Leadership {
    /// Resolves when the leadership is lost (its session ended or stopped answering): from
    /// then on every write is refused, and the process should stop.
    pub async fn lost(mut self) {
        // An error means the watcher itself is gone, which also ends the leadership.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }
}

/// The statements every request uses, prepared once per connection.
struct Statements {
    get: Statement,
    scan: Statement,
    keys: Statement,
    put: Statement,
    delete: Statement,
    term: Statement,
    bytes_get: Statement,
    bytes_scan: Statement,
}

/// A connection and its statements, made again when the connection is lost.
struct Conn {
    config: Config,
    client: Arc<Client>,
    statements: Arc<Statements>,
}

impl Conn {
    async fn open(config: Config) -> Result<Conn, RecordError> {
        let client = connect(&config).await?;
        let statements = Statements::prepare(&client).await?;
        Ok(Conn {
            config,
            client: Arc::new(client),
            statements: Arc::new(statements),
        })
    }

    /// Connects again if the connection was lost (the database restarted, say).
    async fn reconnect(&mut self) -> Result<(), RecordError> {
        if self.client.is_closed() {
            *self = Conn::open(self.config.clone()).await?;
        }
        Ok(())
    }
}

/// Any error of the driver, as a record error.
fn db(err: tokio_postgres::Error) -> RecordError {
    RecordError::Database(Box::new(err))
}

impl Postgres {
    /// Connects to `url` (a `postgresql://` URL or `key=value` pairs, as libpq takes them),
    /// brings the schema up to date and starts the driver's thread.
    pub fn connect(url: &str) -> Result<Postgres, RecordError> {
        let config = bounded(url.parse().map_err(db)?);
        let name = describe(&config);
        let (requests, receiver) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let term = Arc::new(AtomicU64::new(UNFENCED));
        std::thread::Builder::new()
            .name("koala-postgres".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(RecordError::Database(Box::new(e))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let opened = async {
                        let mut client = connect(&config).await?;
                        migrate(&mut client).await?;
                        drop(client);
                        Ok::<_, RecordError>((
                            Conn::open(config.clone()).await?,
                            Conn::open(config.clone()).await?,
                        ))
                    };
                    let (first, writer) = match opened.await {
                        Ok(conns) => conns,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let mut readers = vec![first];
                    for _ in 1..READERS {
                        match Conn::open(config.clone()).await {
                            Ok(conn) => readers.push(conn),
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    serve(config, readers, writer, receiver, term).await;
                });
            })
            .map_err(|e| RecordError::Database(Box::new(e)))?;
        ready_rx.recv().map_err(|_| gone())??;
        Ok(Postgres {
            requests,
            name: name.into(),
        })
    }

    /// The database, for diagnostics (host, port and database name; never the password).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until this process leads the cloud: takes the leader's lock (calling `waiting`
    /// once if another process holds it), raises the term and fences every later write of
    /// this process with it.
    pub async fn lead(
        &self,
        holder: &str,
        waiting: impl FnOnce(),
    ) -> Result<Leadership, RecordError> {
        let (waiting_tx, waiting_rx) = oneshot::channel();
        let (reply_tx, mut reply_rx) = oneshot::channel();
        self.requests
            .send(Request::Lead {
                holder: holder.to_owned(),
                waiting: waiting_tx,
                reply: reply_tx,
            })
            .map_err(|_| gone())?;
        tokio::select! {
            reply = &mut reply_rx => return reply.map_err(|_| gone())?,
            told = waiting_rx => if told.is_ok() { waiting() },
        }
        reply_rx.await.map_err(|_| gone())?
    }

    pub(crate) fn get(&self, store: &str, key: &str) -> Result<Option<String>, RecordError> {
        self.ask(|reply| Request::Get {
            store: store.to_owned(),
            key: key.to_owned(),
            reply,
        })
    }

    pub(crate) fn scan(
        &self,
        store: &str,
        prefix: &str,
        keys_only: bool,
    ) -> Result<Vec<(String, String)>, RecordError> {
        self.ask(|reply| Request::Scan {
            store: store.to_owned(),
            prefix: prefix.to_owned(),
            keys_only,
            reply,
        })
    }

    pub(crate) fn write(&self, store: &str, changes: Vec<Change>) -> Result<(), RecordError> {
        self.ask(|reply| Request::Write {
            store: store.to_owned(),
            changes,
            reply,
        })
    }

    /// The value of `key` in the binary key space `space`.
    pub fn bytes_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, RecordError> {
        self.ask(|reply| Request::BytesGet {
            space: space.to_owned(),
            key: key.to_vec(),
            reply,
        })
    }

    /// At most `limit` keys of `space` in `[from, upper)` with their values, in byte order.
    pub fn bytes_scan(
        &self,
        space: &str,
        from: &[u8],
        upper: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Pair>, RecordError> {
        self.ask(|reply| Request::BytesScan {
            space: space.to_owned(),
            from: from.to_vec(),
            upper: upper.map(<[u8]>::to_vec),
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            reply,
        })
    }

    /// Writes `batch` in one transaction if its checks hold (else [`RecordError::Conflict`]),
    /// committed (WAL flushed by PostgreSQL) before it returns. Writes of several threads go
    /// on several connections at once, so that the server's commits share WAL flushes.
    pub fn bytes_write(&self, batch: BytesBatch) -> Result<(), RecordError> {
        self.ask(|reply| Request::BytesWrite { batch, reply })
    }

    /// Sends a request and waits for its answer.
    fn ask<T>(
        &self,
        request: impl FnOnce(std_mpsc::SyncSender<Result<T, RecordError>>) -> Request,
    ) -> Result<T, RecordError> {
        let (reply, answer) = std_mpsc::sync_channel(1);
        self.requests.send(request(reply)).map_err(|_| gone())?;
        let wait = || answer.recv().map_err(|_| gone())?;
        // Called from a task of a multi-threaded runtime (an S3 or EC2 handler), the wait
        // (a round trip) first hands the worker's other tasks to another worker, so that
        // requests in flight are not held up behind it.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }
}

/// The driver's thread ended (it only does if its runtime could not start).
fn gone() -> RecordError {
    RecordError::Database("the PostgreSQL driver's thread has stopped".into())
}

/// `host:port/dbname` of a configuration.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgresql {host}:{port}/{}",
        config.get_dbname().unwrap_or("(the user's database)")
    )
}

/// How long a connection attempt, and each request, may take before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `config` with every session bounded, so that a host that vanishes or a process that stops
/// cannot hold locks (the leader's, a transaction's row locks) for the kernel's two-hour
/// keepalive: both ends probe a silent connection after 5 s and drop it after three
/// unanswered probes 2 s apart, and the server ends a session left idle inside a
/// transaction after 10 s.
fn bounded(mut config: Config) -> Config {
    let mut options = config.get_options().unwrap_or_default().to_owned();
    options.push_str(
        " -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 \
         -c idle_in_transaction_session_timeout=10s",
    );
    config
        .options(options.trim())
        .connect_timeout(REQUEST_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3);
    config
}

/// `request` within [`REQUEST_TIMEOUT`].
async fn in_time<T>(
    request: impl std::future::Future<Output = Result<T, RecordError>>,
) -> Result<T, RecordError> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .unwrap_or_else(|_| {
            Err(RecordError::Database(
                "the database did not answer in time".into(),
            ))
        })
}

/// A new connection, its task spawned on the driver's runtime.
async fn connect(config: &Config) -> Result<Client, RecordError> {
    let (client, connection) = config.connect(NoTls).await.map_err(db)?;
    // Ends with the connection; the client then answers every call with an error, and the
    // next request connects again.
    tokio::spawn(connection);
    Ok(client)
}

/// `prefix` as a LIKE pattern matching every string that starts with it.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Answers requests until every handle is dropped: reads at once, each on its own task over
/// the reading connection (pipelined), writes one at a time on the writing connection, so that
/// a write's transaction never holds up a read and reads never see a write uncommitted.
async fn serve(
    config: Config,
    mut readers: Vec<Conn>,
    writer: Conn,
    mut requests: mpsc::UnboundedReceiver<Request>,
    term: Arc<AtomicU64>,
) {
    let (writes, pending) = mpsc::unbounded_channel();
    tokio::spawn(write_in_turn(writer, pending, term.clone()));
    let (byte_writes, byte_pending) = mpsc::unbounded_channel();
    let byte_pending = Arc::new(tokio::sync::Mutex::new(byte_pending));
    for _ in 0..BYTE_WRITERS {
        tokio::spawn(write_bytes(config.clone(), byte_pending.clone()));
    }
    let mut turn = 0usize;
    while let Some(request) = requests.recv().await {
        // Reads take the reading connections in turn: each is one server process, so reads
        // run on as many cores as there are connections.
        turn = turn.wrapping_add(1);
        let reader = &mut readers[turn % READERS];
        match request {
            Request::Get { store, key, reply } => {
                read(reader, reply, move |client, statements| async move {
                    get(&client, &statements, &store, &key).await
                })
                .await
            }
            Request::Scan {
                store,
                prefix,
                keys_only,
                reply,
            } => {
                read(reader, reply, move |client, statements| async move {
                    scan(&client, &statements, &store, &prefix, keys_only).await
                })
                .await
            }
            Request::Write {
                store,
                changes,
                reply,
            } => {
                // The writer only stops with the runtime: a send cannot fail before then.
                let _ = writes.send((store, changes, reply));
            }
            Request::Lead {
                holder,
                waiting,
                reply,
            } => {
                // On its own session, so that waiting for the lock holds up nothing else.
                tokio::spawn(lead(config.clone(), holder, waiting, reply, term.clone()));
            }
            Request::BytesGet { space, key, reply } => {
                read(reader, reply, move |client, statements| async move {
                    let row = client
                        .query_opt(&statements.bytes_get, &[&space, &key])
                        .await
                        .map_err(db)?;
                    Ok(row.map(|row| row.get(0)))
                })
                .await
            }
            Request::BytesScan {
                space,
                from,
                upper,
                limit,
                reply,
            } => {
                read(reader, reply, move |client, statements| async move {
                    let rows = client
                        .query(&statements.bytes_scan, &[&space, &from, &upper, &limit])
                        .await
                        .map_err(db)?;
                    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
                })
                .await
            }
            Request::BytesWrite { batch, reply } => {
                let _ = byte_writes.send((batch, reply));
            }
        }
    }
}

/// Starts `query` on the reading connection (made again if it was lost) on a task of its
/// own, its answer, or the failure to connect, sent to `reply`.
async fn read<T, Query, Answer>(
    reader: &mut Conn,
    reply: std_mpsc::SyncSender<Result<T, RecordError>>,
    query: Query,
) where
    T: Send + 'static,
    Query: FnOnce(Arc<Client>, Arc<Statements>) -> Answer,
    Answer: std::future::Future<Output = Result<T, RecordError>> + Send + 'static,
{
    match in_time(reader.reconnect()).await {
        Ok(()) => {
            let answer = query(reader.client.clone(), reader.statements.clone());
            tokio::spawn(async move {
                let _ = reply.send(in_time(answer).await);
            });
        }
        Err(e) => {
            let _ = reply.send(Err(e));
        }
    }
}

/// A write waiting its turn: the store, its changes, where its answer goes.
type PendingWrite = (
    String,
    Vec<Change>,
    std_mpsc::SyncSender<Result<(), RecordError>>,
);

/// Applies writes one at a time, each in its own transaction fenced by the term.
async fn write_in_turn(
    mut writer: Conn,
    mut pending: mpsc::UnboundedReceiver<PendingWrite>,
    term: Arc<AtomicU64>,
) {
    while let Some((store, changes, reply)) = pending.recv().await {
        let answer = match in_time(writer.reconnect()).await {
            Ok(()) => {
                let term = term.load(Ordering::SeqCst);
                in_time(write(&mut writer, &store, changes, term)).await
            }
            Err(e) => Err(e),
        };
        let _ = reply.send(answer);
    }
}

/// Connections that write binary key spaces, each one transaction at a time.
const BYTE_WRITERS: usize = 4;
/// Connections that read, pipelined, taken in turn.
const READERS: usize = 2;

const BYTES_GET: &str = "SELECT value FROM koala_bytes WHERE space = $1 AND key = $2";
const BYTES_SCAN: &str = "SELECT key, value FROM koala_bytes \
     WHERE space = $1 AND key >= $2 AND ($3::bytea IS NULL OR key < $3) ORDER BY key LIMIT $4";

/// A binary batch waiting for a writer, and where its answer goes.
type PendingBytes = (BytesBatch, std_mpsc::SyncSender<Result<(), RecordError>>);

/// The statements a binary writer uses, prepared once per connection.
struct Writes {
    lock: Statement,
    lock_shared: Statement,
    get: Statement,
    count: Statement,
    put: Statement,
    delete: Statement,
    ensure: Statement,
    locked: Statement,
}

impl Writes {
    async fn prepare(client: &Client) -> Result<Writes, RecordError> {
        let prepare = |sql| client.prepare(sql);
        Ok(Writes {
            lock: prepare("SELECT pg_advisory_xact_lock($1)")
                .await
                .map_err(db)?,
            lock_shared: prepare("SELECT pg_advisory_xact_lock_shared($1)")
                .await
                .map_err(db)?,
            get: prepare(BYTES_GET).await.map_err(db)?,
            count: prepare(
                "SELECT count(*) FROM koala_bytes \
                 WHERE space = $1 AND key >= $2 AND ($3::bytea IS NULL OR key < $3)",
            )
            .await
            .map_err(db)?,
            put: prepare(
                "INSERT INTO koala_bytes (space, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value",
            )
            .await
            .map_err(db)?,
            delete: prepare("DELETE FROM koala_bytes WHERE space = $1 AND key = $2")
                .await
                .map_err(db)?,
            ensure: prepare(
                "INSERT INTO koala_bytes (space, key, value) VALUES ($1, $2, '') \
                 ON CONFLICT (space, key) DO NOTHING",
            )
            .await
            .map_err(db)?,
            locked: prepare(
                "SELECT value FROM koala_bytes WHERE space = $1 AND key = $2 FOR UPDATE",
            )
            .await
            .map_err(db)?,
        })
    }
}

/// One writer of binary batches: takes the next waiting batch, writes it on its own
/// connection (made at its first batch, again when lost), answers.
async fn write_bytes(
    config: Config,
    pending: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<PendingBytes>>>,
) {
    let mut conn: Option<(Client, Writes)> = None;
    loop {
        let Some((batch, reply)) = pending.lock().await.recv().await else {
            return;
        };
        if conn.as_ref().is_none_or(|(client, _)| client.is_closed()) {
            let opened = in_time(async {
                let client = connect(&config).await?;
                let writes = Writes::prepare(&client).await?;
                Ok((client, writes))
            })
            .await;
            conn = opened.map_or_else(
                |e| {
                    let _ = reply.send(Err(e));
                    None
                },
                Some,
            );
        }
        if let Some((client, writes)) = conn.as_mut() {
            let _ = reply.send(in_time(write_batch(client, writes, batch)).await);
        }
    }
}

/// A failed statement of a shared write: a deadlock the server broke or a serialization
/// failure is a conflict to decide again, anything else a database failure.
fn shared(err: tokio_postgres::Error) -> RecordError {
    use tokio_postgres::error::SqlState;
    match err.code() {
        Some(c)
            if *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            RecordError::Conflict
        }
        _ => db(err),
    }
}

/// The advisory lock that stands for a key of a binary space: FNV-1a over the space, a
/// separator and the key, the same in every process and release. A check takes the lock of
/// its key rather than the row's lock, because a key that is absent has no row to lock.
fn key_lock(space: &str, key: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in space.as_bytes().iter().chain(&[0u8]).chain(key) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// What one statement of a pipelined batch answered: a check's verdict, or nothing.
enum Answer {
    Holds(bool),
    Done,
}

/// Writes a batch in one transaction. Its locks, checks, puts and deletes are sent at once
/// (pipelined: they still run in order, each after the one before) and the checks judged
/// when the answers are in: a failed check rolls everything back, as if nothing had been
/// sent past it. Merges need the stored value, so each takes one more round trip.
async fn write_batch(
    client: &mut Client,
    writes: &Writes,
    batch: BytesBatch,
) -> Result<(), RecordError> {
    use futures_util::future::{join_all, BoxFuture, FutureExt as _};
    let tx = client.transaction().await.map_err(shared)?;
    // Every lock first, in one order, so that two batches never wait for each other in a
    // circle; the same key checked twice takes its strongest lock once, and a key the batch
    // also writes is locked alone (two batches that both checked it shared would otherwise
    // both pass, then both write).
    let written: std::collections::HashSet<(&str, &[u8])> = batch
        .changes
        .iter()
        .map(|change| match change {
            BytesChange::Put(space, key, _)
            | BytesChange::Delete(space, key)
            | BytesChange::Merge(space, key, _, _) => (space.as_str(), key.as_slice()),
        })
        .collect();
    let mut locks = std::collections::BTreeMap::new();
    for check in &batch.checks {
        if let Check::Same {
            space,
            key,
            exclusive,
            ..
        } = check
        {
            let alone = *exclusive || written.contains(&(space.as_str(), key.as_slice()));
            let held = locks.entry(key_lock(space, key)).or_insert(false);
            *held |= alone;
        }
    }
    let tx_ref = &tx;
    let mut sent: Vec<BoxFuture<'_, Result<Answer, tokio_postgres::Error>>> = Vec::new();
    for (lock, exclusive) in locks {
        let statement = if exclusive {
            &writes.lock
        } else {
            &writes.lock_shared
        };
        sent.push(
            async move {
                tx_ref
                    .execute(statement, &[&lock])
                    .await
                    .map(|_| Answer::Done)
            }
            .boxed(),
        );
    }
    for check in &batch.checks {
        sent.push(match check {
            Check::Same {
                space, key, value, ..
            } => async move {
                let row = tx_ref.query_opt(&writes.get, &[space, key]).await?;
                let found: Option<Vec<u8>> = row.map(|row| row.get(0));
                Ok(Answer::Holds(found == *value))
            }
            .boxed(),
            Check::Count {
                space,
                from,
                upper,
                count,
            } => async move {
                let row = tx_ref
                    .query_one(&writes.count, &[space, from, upper])
                    .await?;
                Ok(Answer::Holds(row.get::<_, i64>(0) == *count))
            }
            .boxed(),
        });
    }
    for change in &batch.changes {
        match change {
            BytesChange::Put(space, key, value) => sent.push(
                async move {
                    let put = tx_ref.execute(&writes.put, &[space, key, value]).await;
                    put.map(|_| Answer::Done)
                }
                .boxed(),
            ),
            BytesChange::Delete(space, key) => sent.push(
                async move {
                    let delete = tx_ref.execute(&writes.delete, &[space, key]).await;
                    delete.map(|_| Answer::Done)
                }
                .boxed(),
            ),
            BytesChange::Merge(..) => {}
        }
    }
    // The first failure is the cause (the statements after it fail for it).
    for answer in join_all(sent).await {
        match answer.map_err(shared)? {
            Answer::Holds(false) => return Err(RecordError::Conflict),
            Answer::Holds(true) | Answer::Done => {}
        }
    }
    for change in &batch.changes {
        if let BytesChange::Merge(space, key, operand, merge) = change {
            // The row, made first if absent, is locked so that concurrent merges add up.
            let (made, stored) = futures_util::future::join(
                tx.execute(&writes.ensure, &[space, key]),
                tx.query_one(&writes.locked, &[space, key]),
            )
            .await;
            made.map_err(shared)?;
            let stored: Vec<u8> = stored.map_err(shared)?.get(0);
            let merged = merge((!stored.is_empty()).then_some(&stored[..]), operand);
            tx.execute(&writes.put, &[space, key, &merged])
                .await
                .map_err(shared)?;
        }
    }
    tx.commit().await.map_err(shared)
}

async fn get(
    client: &Client,
    statements: &Statements,
    store: &str,
    key: &str,
) -> Result<Option<String>, RecordError> {
    let row = client
        .query_opt(&statements.get, &[&store, &key])
        .await
        .map_err(db)?;
    Ok(row.map(|row| row.get(0)))
}

async fn scan(
    client: &Client,
    statements: &Statements,
    store: &str,
    prefix: &str,
    keys_only: bool,
) -> Result<Vec<(String, String)>, RecordError> {
    let pattern = like_prefix(prefix);
    let statement = match keys_only {
        true => &statements.keys,
        false => &statements.scan,
    };
    let rows = client
        .query(statement, &[&store, &pattern])
        .await
        .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|row| match keys_only {
            true => (row.get(0), String::new()),
            false => (row.get(0), row.get(1)),
        })
        .collect())
}

async fn write(
    writer: &mut Conn,
    store: &str,
    changes: Vec<Change>,
    term: u64,
) -> Result<(), RecordError> {
    let statements = writer.statements.clone();
    // The writer's client is only ever shared with this task: a transaction needs it alone.
    let client = Arc::get_mut(&mut writer.client)
        .ok_or_else(|| RecordError::Database("the writing connection is shared".into()))?;
    let tx = client.transaction().await.map_err(db)?;
    if term != UNFENCED {
        let row = tx.query_one(&statements.term, &[]).await.map_err(db)?;
        let current: i64 = row.get(0);
        if term == LOST || u64::try_from(current).ok() != Some(term) {
            // Dropping the transaction rolls it back.
            return Err(RecordError::NotLeader);
        }
    }
    for change in &changes {
        match change {
            Change::Put(key, value) => tx.execute(&statements.put, &[&store, key, value]).await,
            Change::Delete(key) => tx.execute(&statements.delete, &[&store, key]).await,
        }
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, RecordError> {
        let prepare = |sql| client.prepare(sql);
        Ok(Statements {
            get: prepare("SELECT value FROM koala_records WHERE store = $1 AND key = $2")
                .await
                .map_err(db)?,
            scan: prepare(
                "SELECT key, value FROM koala_records \
                 WHERE store = $1 AND key LIKE $2 ORDER BY key",
            )
            .await
            .map_err(db)?,
            keys: prepare(
                "SELECT key FROM koala_records WHERE store = $1 AND key LIKE $2 ORDER BY key",
            )
            .await
            .map_err(db)?,
            put: prepare(
                "INSERT INTO koala_records (store, key, value) \
                 VALUES ($1, $2, $3) \
                 ON CONFLICT (store, key) DO UPDATE SET value = EXCLUDED.value",
            )
            .await
            .map_err(db)?,
            delete: prepare("DELETE FROM koala_records WHERE store = $1 AND key = $2")
                .await
                .map_err(db)?,
            term: prepare("SELECT term FROM koala_leader WHERE id = 1 FOR SHARE")
                .await
                .map_err(db)?,
            bytes_get: prepare(BYTES_GET).await.map_err(db)?,
            bytes_scan: prepare(BYTES_SCAN).await.map_err(db)?,
        })
    }
}

/// Brings the schema to the newest version this code knows, or refuses a newer one.
async fn migrate(client: &mut Client) -> Result<(), RecordError> {
    let tx = client.transaction().await.map_err(db)?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATE_LOCK}); \
         CREATE TABLE IF NOT EXISTS koala_schema (version integer NOT NULL)"
    ))
    .await
    .map_err(db)?;
    let found: Option<i32> = tx
        .query_opt("SELECT version FROM koala_schema", &[])
        .await
        .map_err(db)?
        .map(|row| row.get(0));
    let known = MIGRATIONS.len();
    let version = match found {
        Some(v) => usize::try_from(v).map_err(|_| {
            RecordError::Database(format!("the schema's version {v} is not a version").into())
        })?,
        None => {
            tx.execute("INSERT INTO koala_schema VALUES (0)", &[])
                .await
                .map_err(db)?;
            0
        }
    };
    if version > known {
        return Err(RecordError::Newer {
            key: "the PostgreSQL schema".to_owned(),
            version: u32::try_from(version).unwrap_or(u32::MAX),
            known: u32::try_from(known).unwrap_or(u32::MAX),
        });
    }
    for migration in &MIGRATIONS[version..] {
        tx.batch_execute(migration).await.map_err(db)?;
    }
    let newest = i32::try_from(known).unwrap_or(i32::MAX);
    tx.execute("UPDATE koala_schema SET version = $1", &[&newest])
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)
}

/// Takes the leadership on a session of its own and keeps it until that session fails.
async fn lead(
    config: Config,
    holder: String,
    waiting: oneshot::Sender<()>,
    reply: oneshot::Sender<Result<Leadership, RecordError>>,
    term: Arc<AtomicU64>,
) {
    let (client, taken) = match take_lead(&config, &holder, waiting).await {
        Ok(taken) => taken,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    term.store(taken, Ordering::SeqCst);
    let (lost_tx, lost) = watch::channel(false);
    if reply.send(Ok(Leadership { term: taken, lost })).is_err() {
        // Nobody waits for the leadership any more: give it up at once.
        term.store(LOST, Ordering::SeqCst);
        return;
    }
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let alive = tokio::time::timeout(HEARTBEAT_TIMEOUT, client.simple_query("SELECT 1"))
            .await
            .is_ok_and(|answer| answer.is_ok());
        if !alive {
            term.store(LOST, Ordering::SeqCst);
            let _ = lost_tx.send(true);
            return;
        }
    }
}

/// Waits for the leader's lock on a new session and raises the term: the session and the
/// new term.
async fn take_lead(
    config: &Config,
    holder: &str,
    waiting: oneshot::Sender<()>,
) -> Result<(Client, u64), RecordError> {
    let client = connect(config).await?;
    // A leader that stops (paused, frozen) while its host still answers keepalives must not
    // keep the lock: its heartbeat runs every second, and the server ends the session after
    // 5 s without one. (A host that vanishes is dropped by the keepalives of `bounded`.)
    client
        .batch_execute("SET idle_session_timeout = '5s'")
        .await
        .map_err(db)?;
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
        .await
        .map_err(db)?
        .get(0);
    if !free {
        let _ = waiting.send(());
        client
            .execute("SELECT pg_advisory_lock($1)", &[&LEADER_LOCK])
            .await
            .map_err(db)?;
    }
    let taken: i64 = client
        .query_one(
            "UPDATE koala_leader SET term = term + 1, holder = $1, since = now() \
             WHERE id = 1 RETURNING term",
            &[&holder],
        )
        .await
        .map_err(db)?
        .get(0);
    let taken = u64::try_from(taken)
        .map_err(|_| RecordError::Database("the leader's term is negative".into()))?;
    Ok((client, taken))
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn like_patterns_match_their_prefix_literally() {
        assert_eq!(like_prefix("instance/"), "instance/%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}

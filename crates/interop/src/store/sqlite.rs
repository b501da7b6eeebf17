//! The embedded database (SQLite, WAL) and the message store kept in it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tokio::sync::{mpsc, oneshot};

use super::raw::{Compact, RawInsert, MESSAGE_COLUMNS};
use super::schema::{event_log, message};
use super::{
    micros, Durable, EventFilter, EventRow, Kind, MessageFilter, MessageRow, MessageStore,
    NewEvent, Status, StatusUpdate,
};
use crate::error::StoreError;

/// Schema of the embedded database: message store, event log, local tables.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// WAL size (pages, 16 MB) past which the writer itself checkpoints after a commit. The
/// checkpoint thread copies the WAL into the database as it grows, but only a writer can
/// restart the WAL from its beginning, and one that commits without pause never finds
/// it fully copied: without this the WAL grew without bound (800 MB in 7 s of ingest),
/// every append landing on fresh pages the kernel must zero. The checkpoint thread has
/// copied nearly everything by then, so the writer's share is mostly the fsyncs; at
/// 1,000 pages those were ~7% of its time in an ingest. (When the writer did all the
/// copying, 10,000 pages held it long enough to put the REST p99 at 30 ms; now 4,000
/// pages leave it at ~6 ms, BENCHMARKS.md.)
const WAL_CHECKPOINT_PAGES: u32 = 4_000;
/// How long the writer may hold back a write nobody waits for (a process's request
/// still in flight, a "delivered" status), hoping to fold it into the message's final
/// status: most requests complete well within it, and are then written once.
const HOLD: Duration = Duration::from_millis(100);
/// How often the checkpoint thread copies the WAL into the database (see
/// [`checkpoint_loop`]).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);
/// Most writes committed in one transaction.
const MAX_BATCH: usize = 8192;

type Done = oneshot::Sender<Result<(), StoreError>>;
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A host's write: runs inside the batch's transaction, says whether it succeeded (its
/// savepoint is rolled back if not) and what to do once the batch commits.
type Job = Box<dyn FnOnce(&mut SqliteConnection) -> (bool, Completion) + Send>;

enum WriteOp {
    Insert(Box<StoredRow>, Option<Done>),
    InsertAndUpdate(Box<StoredRow>, StoredUpdate, Option<Done>),
    Update(StoredUpdate, Option<Done>),
    Event(NewEvent),
    /// A host's write, with whether it runs in a savepoint of its own.
    Job(Job, bool),
    Flush(Done),
    /// Nothing to write: wakes the writer so held-back writes past their time go out.
    Tick,
}

#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The production's embedded database: one writer thread that batches every write into
/// group commits, and a pool of readers. Hosts write their own tables through
/// [`EmbeddedDb::write`], so their rows commit in the same batches as the messages.
#[derive(Clone)]
pub struct EmbeddedDb {
    path: Arc<PathBuf>,
    writer: mpsc::UnboundedSender<WriteOp>,
    readers: Pool<ConnectionManager<SqliteConnection>>,
    names: Arc<Mutex<NameTable>>,
}

/// Item and type names as `message_name` ids, as far as committed: callers turn a
/// message's names into ids before it reaches the writer (the writer's lookups, with the
/// other conversions to the compact row, were ~8% of its time in an ingest). A name not
/// in here goes to the writer as text; the writer interns it by name (so that another
/// store on the same database agrees on its id) and adds it here once its batch commits.
#[derive(Default)]
struct NameTable {
    ids: HashMap<String, i64>,
}

impl std::fmt::Debug for EmbeddedDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDb")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedDb {
    /// Open (creating if needed) the database file, apply the migrations, start the writer.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
            }
        }
        let url = path.to_string_lossy().to_string();
        let mut conn = SqliteConnection::establish(&url).map_err(|e| open_err(e.to_string()))?;
        // busy_timeout first: switching to WAL waits for another connection's lock.
        // Checkpoints mostly run on their own thread (below); the writer checkpoints
        // only once the WAL passes WAL_CHECKPOINT_PAGES.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;\
             PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;\
             PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES};",
        ))
        .map_err(|e| open_err(e.to_string()))?;
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| open_err(format!("migrations failed: {e}")))?;
        let known: Vec<(i64, String)> = {
            use super::schema::message_name as n;
            n::table
                .select((n::id, n::name))
                .load(&mut conn)
                .map_err(|e| open_err(format!("cannot read message_name: {e}")))?
        };
        let names = Arc::new(Mutex::new(NameTable {
            ids: known.into_iter().map(|(id, name)| (name, id)).collect(),
        }));

        let readers = Pool::builder()
            .max_size(4)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(Pragmas))
            .build(ConnectionManager::<SqliteConnection>::new(url))
            .map_err(|e| open_err(e.to_string()))?;

        let (writer, rx) = mpsc::unbounded_channel();
        let committed_names = names.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx, committed_names))
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;
        let alive = writer.downgrade();
        let checkpoints = readers.clone();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, alive))
            .map_err(|e| open_err(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            writer,
            readers,
            names,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` in the writer's current batch (its own savepoint) and resolve once the
    /// batch is committed. An error from `f` rolls back only `f`'s writes.
    pub fn write<T, F>(&self, f: F) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
    {
        self.job(f, true)
    }

    /// [`EmbeddedDb::write`] without a savepoint of its own: `f`'s writes commit or fail
    /// with the whole batch, and an error from `f` fails the batch. For a host's hot
    /// writes that fail only when the database does (an upsert, a journal row): a
    /// savepoint copies every page its writes touch, ~6% of the writer's time in an
    /// ingest. A statement that fails on its own (a constraint) still undoes only itself.
    pub fn write_in_batch<T, F>(&self, f: F) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
    {
        self.job(f, false)
    }

    fn job<T, F>(&self, f: F, savepoint: bool) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn: &mut SqliteConnection| {
            let result = f(conn);
            let ok = result.is_ok();
            let complete = Box::new(move |commit: Result<(), StoreError>| {
                let out = match (commit, result) {
                    // Its own error says more than the batch's it caused.
                    (Err(_), Err(e)) => Err(StoreError::Write(e.to_string())),
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(v)) => Ok(v),
                    (Ok(()), Err(e)) => Err(StoreError::Write(e.to_string())),
                };
                let _ = tx.send(out);
            }) as Completion;
            (ok, complete)
        });
        let sent = self.writer.send(WriteOp::Job(job, savepoint)).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    /// Run a read on a pooled connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_blocking(f))
            .await
            .map_err(|e| StoreError::Query(format!("reader task failed: {e}")))?
    }

    /// Run a read on a pooled connection, blocking the calling thread.
    pub fn read_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut SqliteConnection) -> QueryResult<T>,
    {
        let mut conn = self
            .readers
            .get()
            .map_err(|e| StoreError::Query(e.to_string()))?;
        f(&mut conn).map_err(|e| StoreError::Query(e.to_string()))
    }

    fn send(&self, op: WriteOp) -> bool {
        self.writer.send(op).is_ok()
    }

    /// A row's names as it carries them to the writer: their ids when known.
    fn name_refs<const N: usize>(&self, names: [&str; N]) -> [NameRef; N] {
        let table = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.map(|name| match table.ids.get(name) {
            Some(&id) => NameRef::Id(id),
            None => NameRef::New(name.to_string()),
        })
    }
}

/// Copy the WAL back into the database file every so often, off the writer's path, so
/// commits never wait for a checkpoint and the WAL does not grow without bound; also
/// ticks the writer so it writes out what it holds back.
///
/// Checkpoints run every [`CHECKPOINT_EVERY`]: each then copies only a few hundred
/// pages, and keeps up with an ingest, so the writer's own backstop checkpoint (see
/// [`WAL_CHECKPOINT_PAGES`]) rarely fires. At every 250 ms, the writer spent ~10% of
/// its time checkpointing; at 10 ms, ~5%, the rest moving to this thread, on the other
/// core (BENCHMARKS.md). An idle database's passive checkpoint finds nothing to copy.
fn checkpoint_loop(
    readers: Pool<ConnectionManager<SqliteConnection>>,
    alive: mpsc::WeakUnboundedSender<WriteOp>,
) {
    let ticks_per_writer_tick = (HOLD.as_millis() / 2 / CHECKPOINT_EVERY.as_millis()).max(1);
    let mut ticks = 0u128;
    while let Some(writer) = alive.upgrade() {
        if ticks.is_multiple_of(ticks_per_writer_tick) {
            let _ = writer.send(WriteOp::Tick);
        }
        drop(writer);
        std::thread::sleep(CHECKPOINT_EVERY);
        ticks = ticks.wrapping_add(1);
        if let Ok(mut c) = readers.get() {
            if let Err(e) = c.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
                log::warn!("message store: checkpoint failed: {e}");
            }
        }
    }
    // Last one on close: leave a small WAL behind.
    if let Ok(mut c) = readers.get() {
        let _ = c.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);");
    }
}

/// The writer's connection: diesel for hosts' jobs, and the hot statements (message rows,
/// status changes, events) run as cached prepared statements straight on the same SQLite
/// handle. Going through diesel's query builder for those cost about 40% of the writer's
/// time in an ingest (BENCHMARKS.md).
struct Writer {
    // Fields drop in order: the statement, then `hot`, which borrows `conn`'s handle
    // without closing it, then `conn`.
    /// INSERT of ROWS_PER_INSERT message rows, bound without copies.
    multi_insert: RawInsert,
    /// INSERT OR IGNORE of KEYED_ROWS_PER_INSERT rows that carry an idempotency key.
    keyed_insert: RawInsert,
    hot: rusqlite::Connection,
    conn: SqliteConnection,
    names: Names,
    /// The callers' names (see [`NameTable`]).
    shared_names: Arc<Mutex<NameTable>>,
}

impl Writer {
    fn new(
        mut conn: SqliteConnection,
        shared_names: Arc<Mutex<NameTable>>,
    ) -> Result<Self, String> {
        // SAFETY: the handle stays valid as long as `conn`, which `Writer` drops after
        // `hot`; rusqlite's handle does not close it, and only runs statements inside the
        // transactions diesel opens (it never begins or ends one itself).
        let hot =
            unsafe { conn.with_raw_connection(|handle| rusqlite::Connection::from_handle(handle)) }
                .map_err(|e| e.to_string())?;
        hot.set_prepared_statement_cache_capacity(16);
        let one_row = format!("({})", vec!["?"; MESSAGE_COLUMNS].join(", "));
        let columns = INSERT_MESSAGE
            .split(" VALUES")
            .next()
            .unwrap_or(INSERT_MESSAGE);
        let sql = format!(
            "{columns} VALUES {}",
            vec![one_row.clone(); ROWS_PER_INSERT].join(", ")
        );
        // SAFETY: the handle is `conn`'s, which outlives the statement (field order
        // above), and the writer uses both from its one thread.
        let multi_insert = unsafe { RawInsert::prepare(hot.handle(), &sql, ROWS_PER_INSERT) }?;
        let sql = format!(
            "{} VALUES {}",
            columns.replacen("INSERT OR FAIL", "INSERT OR IGNORE", 1),
            vec![one_row; KEYED_ROWS_PER_INSERT].join(", ")
        );
        // SAFETY: as above.
        let keyed_insert =
            unsafe { RawInsert::prepare(hot.handle(), &sql, KEYED_ROWS_PER_INSERT) }?;
        Ok(Self {
            multi_insert,
            keyed_insert,
            hot,
            conn,
            names: Names::default(),
            shared_names,
        })
    }
}

/// Why a batch did not commit.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("{0}")]
    Diesel(#[from] diesel::result::Error),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Insert(String),
}

/// Rows per multi-row message INSERT.
const ROWS_PER_INSERT: usize = 16;
/// Rows per multi-row INSERT of keyed rows (a session's first request from a service).
const KEYED_ROWS_PER_INSERT: usize = 8;
/// OR FAIL, not the default ABORT: a multi-row statement that may abort needs a statement
/// journal (a copy of every page it touches, to undo its first rows), and a failed insert
/// fails the whole batch anyway.
const INSERT_MESSAGE: &str =
    "INSERT OR FAIL INTO message_data (id, session_id, parent_id, source, \
     target, type_name, kind, status, is_error, error_text, created, processed, body, \
     session_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

/// The writer's side of [`NameTable`]: the names it interned in the current batch,
/// added to the shared table once the batch commits, dropped if it does not.
#[derive(Default)]
struct Names {
    this_batch: HashMap<String, i64>,
}

impl Names {
    fn id(
        &mut self,
        hot: &rusqlite::Connection,
        shared: &Mutex<NameTable>,
        name: &NameRef,
    ) -> rusqlite::Result<i64> {
        let name = match name {
            NameRef::Id(id) => return Ok(*id),
            NameRef::New(name) => name,
        };
        // Rows sent before an earlier batch committed the name still carry it as text.
        let known = self.this_batch.get(name).copied().or_else(|| {
            let table = shared.lock().unwrap_or_else(PoisonError::into_inner);
            table.ids.get(name).copied()
        });
        if let Some(id) = known {
            return Ok(id);
        }
        hot.prepare_cached("INSERT OR IGNORE INTO message_name (name) VALUES (?1)")?
            .execute([name])?;
        let id = hot
            .prepare_cached("SELECT id FROM message_name WHERE name = ?1")?
            .query_row([name], |r| r.get(0))?;
        self.this_batch.insert(name.clone(), id);
        Ok(id)
    }

    /// After the batch: its names are committed (shared with the callers) or gone.
    fn batch_done(&mut self, committed: bool, shared: &Mutex<NameTable>) {
        if committed && !self.this_batch.is_empty() {
            let mut table = shared.lock().unwrap_or_else(PoisonError::into_inner);
            table.ids.extend(self.this_batch.drain());
        }
        self.this_batch.clear();
    }
}

/// A name in a row on its way to the writer: its `message_name` id when the caller knew
/// it, else the name itself.
#[derive(Debug)]
enum NameRef {
    Id(i64),
    New(String),
}

/// A message row as the writer takes it: [`MessageRow`] turned by its caller into what
/// `message_data` stores (names as ids, kind and status as codes, times in microseconds),
/// so the writer's thread, the store's bottleneck, only binds and steps.
#[derive(Debug)]
struct StoredRow {
    id: i64,
    session_id: i64,
    parent_id: Option<i64>,
    source: NameRef,
    target: NameRef,
    type_name: NameRef,
    kind: Kind,
    status: Status,
    is_error: bool,
    error_text: Option<String>,
    created: i64,
    processed: Option<i64>,
    body: String,
    session_key: Option<String>,
}

impl StoredRow {
    /// As bound to the INSERT, inside the batch's transaction: a name new to the callers
    /// is interned there, so it commits (or not) with the row.
    fn compact(
        &self,
        hot: &rusqlite::Connection,
        names: &mut Names,
        shared: &Mutex<NameTable>,
    ) -> rusqlite::Result<Compact<'_>> {
        Ok(Compact {
            id: self.id,
            session_id: self.session_id,
            parent_id: self.parent_id,
            source: names.id(hot, shared, &self.source)?,
            target: names.id(hot, shared, &self.target)?,
            type_name: names.id(hot, shared, &self.type_name)?,
            kind: self.kind.code(),
            status: self.status.code(),
            is_error: self.is_error,
            error_text: self.error_text.as_deref(),
            created: self.created,
            processed: self.processed,
            body: &self.body,
            session_key: self.session_key.as_deref(),
        })
    }
}

/// A [`StatusUpdate`] with its time in microseconds.
#[derive(Debug)]
struct StoredUpdate {
    id: i64,
    status: Status,
    error_text: Option<String>,
    processed: Option<i64>,
}

impl From<StatusUpdate> for StoredUpdate {
    fn from(u: StatusUpdate) -> Self {
        StoredUpdate {
            id: u.id,
            status: u.status,
            error_text: u.error_text,
            processed: u.processed.as_deref().map(micros),
        }
    }
}

/// Message rows, ROWS_PER_INSERT to a statement (one statement step per group instead of
/// per row), the rest one by one.
fn insert_messages(
    hot: &rusqlite::Connection,
    multi_insert: &mut RawInsert,
    names: &mut Names,
    shared: &Mutex<NameTable>,
    rows: &[StoredRow],
) -> Result<(), BatchError> {
    let rows = rows
        .iter()
        .map(|r| r.compact(hot, names, shared))
        .collect::<Result<Vec<_>, _>>()?;
    let mut groups = rows.chunks_exact(multi_insert.rows());
    for group in &mut groups {
        multi_insert.execute(group).map_err(BatchError::Insert)?;
    }
    for row in groups.remainder() {
        insert_message(hot, row, false)?;
    }
    Ok(())
}

/// Rows with an idempotency key, INSERT OR IGNORE: whether each was inserted (false:
/// its key was already taken). A group that kept fewer rows than it had is rare (a
/// re-read input); its rows are then looked up by id.
fn insert_keyed(
    hot: &rusqlite::Connection,
    keyed_insert: &mut RawInsert,
    names: &mut Names,
    shared: &Mutex<NameTable>,
    rows: &[StoredRow],
) -> Result<Vec<bool>, BatchError> {
    let rows = rows
        .iter()
        .map(|r| r.compact(hot, names, shared))
        .collect::<Result<Vec<_>, _>>()?;
    let mut inserted = Vec::with_capacity(rows.len());
    let group_size = keyed_insert.rows();
    let mut groups = rows.chunks_exact(group_size);
    for group in &mut groups {
        let kept = keyed_insert.execute(group).map_err(BatchError::Insert)?;
        for row in group {
            inserted.push(kept == group_size || message_exists(hot, row.id)?);
        }
    }
    for row in groups.remainder() {
        inserted.push(insert_message(hot, row, true)? > 0);
    }
    Ok(inserted)
}

fn message_exists(hot: &rusqlite::Connection, id: i64) -> rusqlite::Result<bool> {
    hot.prepare_cached("SELECT 1 FROM message_data WHERE id = ?1")?
        .exists([id])
}

fn insert_message(
    hot: &rusqlite::Connection,
    row: &Compact<'_>,
    or_ignore: bool,
) -> rusqlite::Result<usize> {
    let sql = if or_ignore {
        "INSERT OR IGNORE INTO message_data (id, session_id, parent_id, source, target, \
         type_name, kind, status, is_error, error_text, created, processed, body, session_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    } else {
        INSERT_MESSAGE
    };
    hot.prepare_cached(sql)?.execute(rusqlite::params![
        row.id,
        row.session_id,
        row.parent_id,
        row.source,
        row.target,
        row.type_name,
        row.kind,
        row.status,
        row.is_error,
        row.error_text,
        row.created,
        row.processed,
        row.body,
        row.session_key,
    ])
}

fn update_status(hot: &rusqlite::Connection, u: &StoredUpdate) -> rusqlite::Result<usize> {
    if u.status == Status::Delivered {
        // Never step a message back from a later status.
        return hot
            .prepare_cached("UPDATE message_data SET status = ?2 WHERE id = ?1 AND status = ?3")?
            .execute([u.id, Status::Delivered.code(), Status::Queued.code()]);
    }
    hot.prepare_cached(
        "UPDATE message_data SET status = ?2, is_error = ?3, error_text = ?4, processed = ?5 \
         WHERE id = ?1",
    )?
    .execute(rusqlite::params![
        u.id,
        u.status.code(),
        u.status == Status::Error,
        u.error_text,
        u.processed
    ])
}

fn insert_event(hot: &rusqlite::Connection, e: &NewEvent) -> rusqlite::Result<usize> {
    hot.prepare_cached(
        "INSERT INTO event_log (time, level, item, session_id, text) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![
        e.time,
        e.level,
        e.item,
        e.session_id,
        e.text
    ])
}

/// Maps keyed by message id. Ids are the store's own sequence numbers, not input an
/// attacker picks, so a multiplicative hash does (SipHash showed in the writer's profile).
type IdMap<V> = HashMap<i64, V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i64(&mut self, id: i64) {
        // Fibonacci hashing: spreads sequential ids over the high bits hashbrown uses.
        self.0 = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Writes held back across batches (see [`HOLD`]), by message id, and the order they
/// were held in: each batch takes the due ones from the front instead of scanning every
/// held write (work that grew with the rows in flight), and writes them in about the
/// order their ids were given.
#[derive(Default)]
struct Held {
    entries: IdMap<HeldWrite>,
    /// `(since, id)` for every hold; an entry whose id was taken since, or held again
    /// with a later `since`, is skipped.
    order: VecDeque<(Instant, i64)>,
}

impl Held {
    fn hold(&mut self, id: i64, write: HeldWrite) {
        self.order.push_back((write.since, id));
        self.entries.insert(id, write);
    }

    /// Put back a write just taken, held since the same time: its place in `order` is
    /// still there.
    fn keep(&mut self, id: i64, write: HeldWrite) {
        self.entries.insert(id, write);
    }

    fn take(&mut self, id: i64) -> Option<HeldWrite> {
        self.entries.remove(&id)
    }

    /// The writes held since before `now - HOLD` (all of them with `everything`), oldest
    /// first.
    fn take_due(&mut self, now: Instant, everything: bool) -> Vec<(i64, HeldKind)> {
        let mut due = Vec::new();
        while let Some(&(since, id)) = self.order.front() {
            if !everything && now.duration_since(since) < HOLD {
                break;
            }
            self.order.pop_front();
            if let Entry::Occupied(held) = self.entries.entry(id) {
                if held.get().since == since {
                    due.push((id, held.remove().write));
                }
            }
        }
        if everything {
            // Whatever the order lost track of (nothing, unless a bug): never left behind.
            due.extend(self.entries.drain().map(|(id, h)| (id, h.write)));
        }
        due
    }
}

struct HeldWrite {
    since: Instant,
    /// A request row not yet inserted, or only a "delivered" status for a written one.
    write: HeldKind,
}

enum HeldKind {
    Row(Box<StoredRow>),
    Delivered(StoredUpdate),
}

/// One batch's message rows and status changes, before they are written.
#[derive(Default)]
struct Pending {
    rows: Vec<StoredRow>,
    index: IdMap<usize>,
    updates: IdMap<StoredUpdate>,
}

impl Pending {
    fn push(&mut self, row: StoredRow) {
        // Status changes are for requests; replies are written final.
        if row.kind == Kind::Request {
            self.index.insert(row.id, self.rows.len());
        }
        self.rows.push(row);
    }

    /// Fold a status change into a row of this batch, a held row (which then goes out in
    /// this batch if the change is final), or keep it for an UPDATE after the inserts.
    /// Never steps a message back to an earlier status.
    fn update(&mut self, u: StoredUpdate, held: &mut Held) {
        if let Some(row) = self.index.get(&u.id).and_then(|&i| self.rows.get_mut(i)) {
            apply(row, u);
            return;
        }
        let final_status = u.status != Status::Delivered;
        match held.take(u.id) {
            Some(HeldWrite {
                write: HeldKind::Row(mut row),
                since,
            }) => {
                apply(&mut row, u);
                if final_status {
                    self.push(*row);
                } else {
                    held.keep(
                        row.id,
                        HeldWrite {
                            since,
                            write: HeldKind::Row(row),
                        },
                    );
                }
                return;
            }
            Some(HeldWrite {
                write: HeldKind::Delivered(old),
                since,
            }) if !final_status => {
                // A second "delivered" (a re-delivery): keep the first's time.
                held.keep(
                    u.id,
                    HeldWrite {
                        since,
                        write: HeldKind::Delivered(old),
                    },
                );
                return;
            }
            // A final status replaces a held "delivered", which is then never written.
            Some(_) | None => {}
        }
        if !final_status && !self.updates.contains_key(&u.id) {
            held.hold(
                u.id,
                HeldWrite {
                    since: Instant::now(),
                    write: HeldKind::Delivered(u),
                },
            );
            return;
        }
        match self.updates.get(&u.id) {
            Some(old) if old.status > u.status => {}
            _ => {
                self.updates.insert(u.id, u);
            }
        }
    }

    /// Take the held writes older than [`HOLD`] (all of them with `everything`).
    fn release(&mut self, held: &mut Held, everything: bool) {
        for (id, write) in held.take_due(Instant::now(), everything) {
            match write {
                HeldKind::Row(row) => self.push(*row),
                HeldKind::Delivered(u) => {
                    self.updates.entry(id).or_insert(u);
                }
            }
        }
    }
}

fn apply(row: &mut StoredRow, u: StoredUpdate) {
    if row.status > u.status {
        return;
    }
    row.status = u.status;
    row.is_error = u.status == Status::Error;
    if u.status != Status::Delivered {
        row.error_text = u.error_text;
        row.processed = u.processed;
    }
}

fn writer_loop(
    conn: SqliteConnection,
    mut rx: mpsc::UnboundedReceiver<WriteOp>,
    shared_names: Arc<Mutex<NameTable>>,
) {
    let mut writer = match Writer::new(conn, shared_names) {
        Ok(w) => w,
        Err(e) => {
            log::error!("message store: cannot start the writer: {e}");
            return;
        }
    };
    let mut held = Held::default();
    let mut batch = Vec::with_capacity(1024);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        write_batch(&mut writer, &mut batch, &mut held, false);
    }
    // Closed: nothing is held back any more.
    if !held.entries.is_empty() {
        write_batch(&mut writer, &mut batch, &mut held, true);
    }
    log::debug!("message store writer stopped");
}

fn write_batch(writer: &mut Writer, batch: &mut Vec<WriteOp>, held: &mut Held, closing: bool) {
    let Writer {
        hot,
        conn,
        multi_insert,
        keyed_insert,
        names,
        shared_names,
    } = writer;
    let mut dones: Vec<Done> = Vec::new();
    // Writes refused one by one (a duplicate key), reported after the commit.
    let mut refused: Vec<(Done, StoreError)> = Vec::new();
    let mut completions: Vec<Completion> = Vec::new();
    // Message rows are inserted after the loop, so that status changes arriving in the
    // same batch are folded into them; requests nobody waits for are held back a little
    // (see HOLD), so most are written once, already final. A keyed row goes alone, to
    // learn whether its key was new.
    let mut pending = Pending::default();
    let mut keyed: Vec<StoredRow> = Vec::new();
    let mut keyed_dones: Vec<Option<Done>> = Vec::new();
    let mut flush = closing;
    let result = conn.immediate_transaction(|c| -> Result<(), BatchError> {
        for op in batch.drain(..) {
            match op {
                WriteOp::Insert(row, done) if row.session_key.is_some() => {
                    keyed.push(*row);
                    keyed_dones.push(done);
                }
                WriteOp::Insert(row, None) => {
                    held.hold(
                        row.id,
                        HeldWrite {
                            since: Instant::now(),
                            write: HeldKind::Row(row),
                        },
                    );
                }
                WriteOp::Insert(row, Some(done)) => {
                    pending.push(*row);
                    dones.push(done);
                }
                WriteOp::InsertAndUpdate(row, update, done) => {
                    pending.push(*row);
                    pending.update(update, held);
                    dones.extend(done);
                }
                WriteOp::Update(update, done) => {
                    pending.update(update, held);
                    dones.extend(done);
                }
                WriteOp::Event(event) => {
                    insert_event(hot, &event)?;
                }
                WriteOp::Job(job, true) => {
                    // Its own savepoint (a cached statement: diesel's nested
                    // transaction parsed SAVEPOINT and RELEASE for every job).
                    hot.prepare_cached("SAVEPOINT host_write")?.execute([])?;
                    let (ok, complete) = job(c);
                    if !ok {
                        hot.prepare_cached("ROLLBACK TO host_write")?.execute([])?;
                    }
                    hot.prepare_cached("RELEASE host_write")?.execute([])?;
                    completions.push(complete);
                }
                WriteOp::Job(job, false) => {
                    let (ok, complete) = job(c);
                    completions.push(complete);
                    if !ok {
                        return Err(BatchError::Insert(
                            "a host's write failed: the batch is not committed".into(),
                        ));
                    }
                }
                WriteOp::Flush(done) => {
                    flush = true;
                    dones.push(done);
                }
                WriteOp::Tick => {}
            }
        }
        // Keyed rows first: their status changes in this batch are UPDATEs below.
        let inserted = insert_keyed(hot, keyed_insert, names, shared_names, &keyed)?;
        for ((row, done), inserted) in keyed.iter().zip(keyed_dones.drain(..)).zip(inserted) {
            match (inserted, done) {
                (false, Some(done)) => {
                    let key = row.session_key.clone().unwrap_or_default();
                    refused.push((done, StoreError::Duplicate(key)));
                }
                (_, done) => dones.extend(done),
            }
        }
        pending.release(held, flush);
        insert_messages(hot, multi_insert, names, shared_names, &pending.rows)?;
        for update in pending.updates.values() {
            update_status(hot, update)?;
        }
        Ok(())
    });
    names.batch_done(result.is_ok(), shared_names);
    let outcome = result.map_err(|e| {
        log::error!("message store: commit of a batch failed: {e}");
        StoreError::Write(e.to_string())
    });
    for done in dones {
        let _ = done.send(outcome.clone());
    }
    for (done, error) in refused {
        let _ = done.send(outcome.clone().and(Err(error)));
    }
    for complete in completions {
        complete(outcome.clone());
    }
}

/// The message store in the embedded database.
pub struct SqliteStore {
    db: EmbeddedDb,
    next_id: AtomicI64,
    persist: bool,
}

impl SqliteStore {
    /// A store over `db`. With `persist` false, messages are not written (events still
    /// are): only for measuring the framework without its store.
    pub fn new(db: EmbeddedDb, persist: bool) -> Result<Self, StoreError> {
        let next = db.read_blocking(super::next_message_id)?;
        Ok(Self {
            db,
            next_id: AtomicI64::new(next),
            persist,
        })
    }

    pub fn db(&self) -> &EmbeddedDb {
        &self.db
    }

    /// `row` as the writer takes it. Only a row built by hand can fail here: the
    /// runtime writes statuses and kinds from their enums.
    fn stored(&self, row: MessageRow) -> Result<StoredRow, StoreError> {
        let status = Status::parse(&row.status).ok_or_else(|| {
            StoreError::Write(format!(
                "message {}: unknown status '{}'",
                row.id, row.status
            ))
        })?;
        let kind = Kind::parse(&row.kind).ok_or_else(|| {
            StoreError::Write(format!("message {}: unknown kind '{}'", row.id, row.kind))
        })?;
        let [source, target, type_name] =
            self.db
                .name_refs([&row.source, &row.target, &row.type_name]);
        Ok(StoredRow {
            id: row.id,
            session_id: row.session_id,
            parent_id: row.parent_id,
            source,
            target,
            type_name,
            kind,
            status,
            is_error: row.is_error,
            error_text: row.error_text,
            created: micros(&row.created),
            processed: row.processed.as_deref().map(micros),
            body: row.body,
            session_key: row.session_key,
        })
    }

    /// A message row's write, resolving once it is durable.
    fn write_row(
        &self,
        row: MessageRow,
        make: impl FnOnce(Box<StoredRow>, Option<Done>) -> WriteOp,
    ) -> Durable {
        if !self.persist {
            return Durable::ready();
        }
        match self.stored(row) {
            Ok(row) => self.write(|done| make(Box::new(row), done)),
            Err(e) => Durable::failed(e),
        }
    }

    /// A message row's write nobody waits for.
    fn send_row(&self, row: MessageRow, make: impl FnOnce(Box<StoredRow>) -> WriteOp) {
        if self.persist {
            match self.stored(row) {
                Ok(row) => {
                    self.db.send(make(Box::new(row)));
                }
                Err(e) => log::error!("message store: {e}"),
            }
        }
    }

    fn write(&self, make: impl FnOnce(Option<Done>) -> WriteOp) -> Durable {
        if !self.persist {
            return Durable::ready();
        }
        let (tx, rx) = oneshot::channel();
        if self.db.send(make(Some(tx))) {
            Durable::pending(rx)
        } else {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Err(StoreError::Closed));
            Durable::pending(rx)
        }
    }
}

impl MessageStore for SqliteStore {
    fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn peek_id(&self) -> i64 {
        self.next_id.load(Ordering::Relaxed)
    }

    fn insert(&self, row: MessageRow) -> Durable {
        self.write_row(row, WriteOp::Insert)
    }

    fn insert_in_flight(&self, row: MessageRow) {
        self.send_row(row, |row| WriteOp::Insert(row, None));
    }

    fn insert_and_update(&self, row: MessageRow, update: StatusUpdate) -> Durable {
        self.write_row(row, |row, done| {
            WriteOp::InsertAndUpdate(row, update.into(), done)
        })
    }

    fn update(&self, update: StatusUpdate) -> Durable {
        self.write(|done| WriteOp::Update(update.into(), done))
    }

    fn update_detached(&self, update: StatusUpdate) {
        if self.persist {
            self.db.send(WriteOp::Update(update.into(), None));
        }
    }

    fn insert_and_update_detached(&self, row: MessageRow, update: StatusUpdate) {
        self.send_row(row, |row| {
            WriteOp::InsertAndUpdate(row, update.into(), None)
        });
    }

    fn event(&self, event: NewEvent) {
        self.db.send(WriteOp::Event(event));
    }

    fn flush(&self) -> Durable {
        let (tx, rx) = oneshot::channel();
        if self.db.send(WriteOp::Flush(tx)) {
            Durable::pending(rx)
        } else {
            Durable::ready()
        }
    }

    fn persistent(&self) -> bool {
        self.persist
    }

    fn message(&self, id: i64) -> Result<Option<MessageRow>, StoreError> {
        self.db.read_blocking(|c| {
            message::table
                .find(id)
                .select(MessageRow::as_select())
                .first(c)
                .optional()
        })
    }

    fn messages(&self, f: &MessageFilter) -> Result<Vec<MessageRow>, StoreError> {
        let f = f.clone();
        self.db.read_blocking(move |c| {
            let mut q = message::table.select(MessageRow::as_select()).into_boxed();
            if let Some(s) = f.session {
                q = q.filter(message::session_id.eq(s));
            }
            if let Some(s) = f.source {
                q = q.filter(message::source.eq(s));
            }
            if let Some(t) = f.target {
                q = q.filter(message::target.eq(t));
            }
            if let Some(t) = f.type_name {
                q = q.filter(message::type_name.eq(t));
            }
            if let Some(s) = f.status {
                q = q.filter(message::status.eq(s));
            }
            if let Some(b) = f.before {
                q = q.filter(message::id.lt(b));
            }
            q.order(message::id.desc())
                .limit(f.limit.unwrap_or(100).clamp(1, 1000))
                .load(c)
        })
    }

    fn trace(&self, session_id: i64) -> Result<Vec<MessageRow>, StoreError> {
        self.db.read_blocking(|c| {
            message::table
                .filter(message::session_id.eq(session_id))
                .order(message::id.asc())
                .select(MessageRow::as_select())
                .load(c)
        })
    }

    fn events(&self, f: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        let f = f.clone();
        self.db.read_blocking(move |c| {
            let mut q = event_log::table.select(EventRow::as_select()).into_boxed();
            if let Some(l) = f.level {
                q = q.filter(event_log::level.eq(l));
            }
            if let Some(i) = f.item {
                q = q.filter(event_log::item.eq(i));
            }
            if let Some(s) = f.session {
                q = q.filter(event_log::session_id.eq(s));
            }
            q.order(event_log::id.desc())
                .limit(f.limit.unwrap_or(100).clamp(1, 5000))
                .load(c)
        })
    }

    fn unfinished_requests(&self) -> Result<Vec<MessageRow>, StoreError> {
        self.db.read_blocking(|c| {
            message::table
                .filter(message::kind.eq("request"))
                .filter(message::status.eq_any(["queued", "delivered"]))
                .order(message::id.asc())
                .select(MessageRow::as_select())
                .load(c)
        })
    }

    fn purge(&self, cutoff: &str) -> Result<usize, StoreError> {
        use super::schema::message_data as m;
        let cutoff = chrono::DateTime::parse_from_rfc3339(cutoff)
            .map_err(|e| StoreError::Query(format!("purge cutoff '{cutoff}': {e}")))?
            .timestamp_micros();
        self.db.read_blocking(move |c| {
            c.batch_execute("PRAGMA busy_timeout = 30000;")?;
            diesel::delete(
                m::table
                    .filter(m::created.lt(cutoff))
                    .filter(m::status.ne_all([Status::Queued.code(), Status::Delivered.code()])),
            )
            .execute(c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a new database in a temporary folder (kept while the folder lives).
    fn fresh_store() -> (tempfile::TempDir, EmbeddedDb, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(&dir.path().join("p.db")).unwrap();
        let store = SqliteStore::new(db.clone(), true).unwrap();
        (dir, db, store)
    }

    /// Keep the writer busy for 100 ms, once it is: whatever is sent meanwhile queues up
    /// for its next batch.
    fn stall_writer(db: &EmbeddedDb) -> impl Future<Output = Result<(), StoreError>> {
        let (started, running) = std::sync::mpsc::channel();
        let stall = db.write(move |_| {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(100));
            Ok(())
        });
        running.recv().unwrap();
        stall
    }

    fn row(id: i64, source: &str, status: Status, processed: Option<&str>) -> MessageRow {
        MessageRow {
            id,
            session_id: 1,
            parent_id: (id > 1).then_some(1),
            source: source.into(),
            target: "Opération".into(),
            type_name: "FormationRequest".into(),
            kind: if id % 2 == 1 { "request" } else { "reply" }.into(),
            status: status.as_str().into(),
            is_error: status == Status::Error,
            error_text: (status == Status::Error).then(|| "base indisponible".into()),
            created: "2026-12-03T20:01:39.076833Z".into(),
            processed: processed.map(str::to_string),
            body: r#"{"formation":{"id":3,"nom":"é"}}"#.into(),
            session_key: (id == 1).then(|| "a.csv:1".into()),
        }
    }

    #[actix_rt::test]
    async fn rows_read_back_exactly_as_written_through_the_compact_table() {
        let (_dir, db, store) = fresh_store();
        // Enough rows for the multi-row statements and their remainders, keyed and not.
        let mut written = Vec::new();
        for id in 1..=40 {
            let status = [Status::Queued, Status::Completed, Status::Error][id as usize % 3];
            let processed = (status != Status::Queued).then_some("1999-12-31T23:59:59.000001Z");
            let r = row(
                id,
                if id % 4 == 0 { "Service A" } else { "Router" },
                status,
                processed,
            );
            written.push(r.clone());
            drop(store.insert(r));
        }
        store.flush().await.unwrap();
        for w in &written {
            assert_eq!(store.message(w.id).unwrap().as_ref(), Some(w));
        }
        assert_eq!(store.trace(1).unwrap(), written);
        // A status change lands on the compact row and reads back as text.
        store
            .update(StatusUpdate {
                id: 3,
                status: Status::Completed,
                error_text: None,
                processed: Some("2026-12-03T20:01:40.000000Z".into()),
            })
            .await
            .unwrap();
        let changed = store.message(3).unwrap().unwrap();
        assert_eq!(changed.status, "completed");
        assert!(!changed.is_error);
        assert_eq!(
            changed.processed.as_deref(),
            Some("2026-12-03T20:01:40.000000Z")
        );
        // The next store on this database goes on after the last id.
        assert_eq!(SqliteStore::new(db, true).unwrap().peek_id(), 41);
    }

    #[actix_rt::test]
    async fn a_name_first_seen_in_a_batch_that_failed_is_written_with_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let db = EmbeddedDb::open(&path).unwrap();
        let store = SqliteStore::new(db.clone(), true).unwrap();
        store
            .insert(row(4, "Router", Status::Completed, None))
            .await
            .unwrap();
        // Id 4 again: the batch fails, and takes the new name's row with it. The writer is
        // kept busy meanwhile, so that the name and the row queue up for one batch.
        let stall = stall_writer(&db);
        let clash = row(4, "Nouveau service", Status::Completed, None);
        let clash = store.insert(clash);
        let _ = stall.await;
        assert!(clash.await.is_err());
        let later = row(6, "Nouveau service", Status::Completed, None);
        store.insert(later.clone()).await.unwrap();
        assert_eq!(store.message(6).unwrap(), Some(later.clone()));
        // And a database opened again knows the name under the same id.
        drop((store, db));
        let store = SqliteStore::new(EmbeddedDb::open(&path).unwrap(), true).unwrap();
        assert_eq!(store.message(6).unwrap(), Some(later));
        let third = row(8, "Nouveau service", Status::Completed, None);
        store.insert(third.clone()).await.unwrap();
        assert_eq!(store.message(8).unwrap(), Some(third));
    }

    #[actix_rt::test]
    async fn a_write_in_batch_commits_with_its_batch_and_its_failure_fails_the_batch() {
        let (_dir, db, store) = fresh_store();
        let count = |db: &EmbeddedDb| {
            db.read_blocking(|c| {
                diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "(SELECT count(*) FROM training)",
                ))
                .get_result::<i64>(c)
            })
            .unwrap()
        };
        db.write_in_batch(|c| {
            c.batch_execute("INSERT INTO training VALUES (3, 'Anglais', 'Salle 1')")
        })
        .await
        .unwrap();
        assert_eq!(count(&db), 1);
        // A failing one, queued behind a stalled job so that a message and another
        // host's write share its batch: none of them commits, and it reports its own error.
        let stall = stall_writer(&db);
        let message = store.insert(row(10, "Router", Status::Completed, None));
        let other =
            db.write(|c| c.batch_execute("INSERT INTO training VALUES (4, 'Maths', 'Salle 2')"));
        let failing = db.write_in_batch(|c| c.batch_execute("INSERT INTO nowhere VALUES (1)"));
        let _ = stall.await;
        let err = failing.await.unwrap_err().to_string();
        assert!(err.contains("nowhere"), "{err}");
        assert!(message.await.is_err());
        assert!(other.await.is_err());
        assert_eq!(count(&db), 1);
        assert_eq!(store.message(10).unwrap(), None);
        // The writer goes on.
        let again = row(10, "Router", Status::Completed, None);
        store.insert(again.clone()).await.unwrap();
        assert_eq!(store.message(10).unwrap(), Some(again));
    }

    #[actix_rt::test]
    async fn a_clashing_row_in_a_multi_row_insert_leaves_none_of_its_batch() {
        let (_dir, db, store) = fresh_store();
        store
            .insert(row(104, "Router", Status::Completed, None))
            .await
            .unwrap();
        let stall = stall_writer(&db);
        // 100..=131: two full multi-row statements; 104 is taken.
        let writes: Vec<_> = (100..132)
            .filter(|id| id % 2 == 0)
            .chain((100..132).filter(|id| id % 2 == 0).map(|id| id + 1000))
            .map(|id| store.insert(row(id, "Router", Status::Completed, None)))
            .collect();
        let _ = stall.await;
        for (n, w) in writes.into_iter().enumerate() {
            let r = w.await;
            assert!(r.is_err(), "write {n}: {r:?}");
        }
        for id in (100..132).filter(|id| id % 2 == 0 && *id != 104) {
            assert_eq!(store.message(id).unwrap(), None, "message {id}");
        }
        assert!(store.message(104).unwrap().is_some());
    }

    #[test]
    fn held_writes_come_due_oldest_first_and_a_write_taken_or_held_again_is_not_released_twice() {
        let t0 = Instant::now();
        let delivered = |id| StoredUpdate {
            id,
            status: Status::Delivered,
            error_text: None,
            processed: None,
        };
        let at = |ms: u64, id| HeldWrite {
            since: t0 + Duration::from_millis(ms),
            write: HeldKind::Delivered(delivered(id)),
        };
        let mut held = Held::default();
        held.hold(3, at(0, 3));
        held.hold(1, at(10, 1));
        held.hold(2, at(20, 2));
        // 1 taken and put back at its time; 2 taken (its final status came); 4 later.
        let back = held.take(1).unwrap();
        held.keep(1, back);
        assert!(held.take(2).is_some());
        held.hold(4, at(50, 4));
        let ids = |due: Vec<(i64, HeldKind)>| due.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(held.take_due(t0 + HOLD, false)), vec![3]);
        assert_eq!(
            ids(held.take_due(t0 + HOLD + Duration::from_millis(30), false)),
            vec![1]
        );
        // 2 held again, later: due at its new time only, once.
        held.hold(2, at(60, 2));
        assert_eq!(
            ids(held.take_due(t0 + HOLD + Duration::from_millis(55), false)),
            vec![4]
        );
        assert_eq!(
            ids(held.take_due(t0 + HOLD + Duration::from_millis(60), false)),
            vec![2]
        );
        assert!(held.entries.is_empty());
        // Closing takes everything, due or not.
        held.hold(5, at(1_000, 5));
        assert_eq!(ids(held.take_due(t0, true)), vec![5]);
        assert!(held.take_due(t0 + Duration::from_secs(5), true).is_empty());
    }

    #[actix_rt::test]
    async fn two_stores_on_one_database_agree_on_names_they_both_introduce() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let one = SqliteStore::new(EmbeddedDb::open(&path).unwrap(), true).unwrap();
        let two = SqliteStore::new(EmbeddedDb::open(&path).unwrap(), true).unwrap();
        // Each store's callers see both names for the first time, in the other order.
        let a = row(20, "Service A", Status::Completed, None);
        let b = row(22, "Service B", Status::Completed, None);
        one.insert(a.clone()).await.unwrap();
        two.insert(b.clone()).await.unwrap();
        let b_again = row(24, "Service B", Status::Completed, None);
        let a_again = row(26, "Service A", Status::Completed, None);
        one.insert(b_again.clone()).await.unwrap();
        two.insert(a_again.clone()).await.unwrap();
        // And once the names are known to both, from their caches.
        let (a3, b3) = (
            row(28, "Service A", Status::Completed, None),
            row(30, "Service B", Status::Completed, None),
        );
        one.insert(b3.clone()).await.unwrap();
        two.insert(a3.clone()).await.unwrap();
        for r in [a, b, b_again, a_again, a3, b3] {
            assert_eq!(one.message(r.id).unwrap().as_ref(), Some(&r));
        }
    }

    #[actix_rt::test]
    async fn a_row_with_an_unknown_status_is_refused_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::new(EmbeddedDb::open(&dir.path().join("p.db")).unwrap(), true).unwrap();
        let mut bad = row(7, "Router", Status::Completed, None);
        bad.status = "finished".into();
        let err = store.insert(bad).await.unwrap_err().to_string();
        assert!(
            err.contains("message 7") && err.contains("'finished'"),
            "{err}"
        );
        // The store goes on.
        let good = row(8, "Router", Status::Completed, None);
        store.insert(good.clone()).await.unwrap();
        assert_eq!(store.message(8).unwrap(), Some(good));
    }

    #[actix_rt::test]
    async fn a_database_from_before_the_compact_store_keeps_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        {
            let mut c = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
            for _ in 0..3 {
                c.run_next_migration(MIGRATIONS).unwrap();
            }
            c.batch_execute(
                "INSERT INTO message VALUES \
                 (1, 1, NULL, 'Svc', 'Router', 'Ping', 'request', 'completed', 0, NULL, \
                  '2026-12-03T20:01:39.076833Z', '2026-12-03T20:01:39.090172Z', '{}', 'k1'), \
                 (2, 1, 1, 'Router', 'Svc', 'Pong', 'reply', 'error', 1, 'refusé', \
                  '2026-12-03T20:01:39.090000Z', NULL, '{\"n\":1}', NULL); \
                 INSERT INTO training VALUES (3, 'Anglais', 'Salle 1')",
            )
            .unwrap();
        }
        let store = SqliteStore::new(EmbeddedDb::open(&path).unwrap(), true).unwrap();
        let rows = store.trace(1).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].created, "2026-12-03T20:01:39.076833Z");
        assert_eq!(
            rows[0].processed.as_deref(),
            Some("2026-12-03T20:01:39.090172Z")
        );
        assert_eq!(rows[0].session_key.as_deref(), Some("k1"));
        assert_eq!(
            (rows[1].kind.as_str(), rows[1].status.as_str()),
            ("reply", "error")
        );
        assert_eq!(rows[1].error_text.as_deref(), Some("refusé"));
        assert_eq!(
            (rows[1].source.as_str(), rows[1].type_name.as_str()),
            ("Router", "Pong")
        );
        assert_eq!(store.peek_id(), 3);
        // And it goes on: a new name, a duplicate key still refused.
        let mut again = row(3, "Nouveau", Status::Queued, None);
        again.session_key = Some("k1".into());
        assert!(matches!(
            store.insert(again).await,
            Err(StoreError::Duplicate(_))
        ));
        store
            .insert(row(5, "Nouveau", Status::Queued, None))
            .await
            .unwrap();
        assert_eq!(store.message(5).unwrap().unwrap().source, "Nouveau");
        // op-iris's table, now keyed by its rowid, kept its rows.
        #[derive(QueryableByName, Debug, PartialEq)]
        struct Training {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let kept = store
            .db()
            .read_blocking(|c| {
                diesel::sql_query("SELECT id, name FROM training").load::<Training>(c)
            })
            .unwrap();
        assert_eq!(
            kept,
            vec![Training {
                id: 3,
                name: "Anglais".into()
            }]
        );
    }

    #[actix_rt::test]
    async fn purge_deletes_finished_messages_before_the_cutoff_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(&dir.path().join("p.db")).unwrap();
        let store = SqliteStore::new(db, true).unwrap();
        drop(store.insert(row(1, "A", Status::Completed, None)));
        drop(store.insert(row(3, "A", Status::Queued, None)));
        let mut late = row(5, "A", Status::Completed, None);
        late.created = "2027-01-01T00:00:00.000000Z".into();
        drop(store.insert(late));
        store.flush().await.unwrap();
        assert!(store.purge("not a time").is_err());
        assert_eq!(store.purge("2026-12-31T00:00:00Z").unwrap(), 1);
        assert!(store.message(1).unwrap().is_none());
        assert!(
            store.message(3).unwrap().is_some(),
            "unfinished messages stay"
        );
        assert!(store.message(5).unwrap().is_some());
    }
}

//! The embedded database (SQLite, WAL) and the message store kept in it.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tokio::sync::{mpsc, oneshot};

use super::schema::{event_log, message};
use super::{
    Durable, EventFilter, EventRow, MessageFilter, MessageRow, MessageStore, NewEvent, Status,
    StatusUpdate,
};
use crate::error::StoreError;

/// Schema of the embedded database: message store, event log, local tables.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 8192;
/// Message rows per multi-row INSERT (SQLite allows 32766 bound values; 14 per row).
const ROWS_PER_INSERT: usize = 32;
/// Message ids per grouped status UPDATE.
const IDS_PER_UPDATE: usize = 500;

type Done = oneshot::Sender<Result<(), StoreError>>;
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(&mut SqliteConnection) -> Completion + Send>;

enum WriteOp {
    Insert(Box<MessageRow>, Option<Done>),
    InsertAndUpdate(Box<MessageRow>, StatusUpdate, Option<Done>),
    Update(StatusUpdate, Option<Done>),
    Event(NewEvent),
    Job(Job),
    Flush(Done),
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
        // Checkpoints run on their own thread (below), not inside the writer's commits.
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;\
             PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;",
        )
        .map_err(|e| open_err(e.to_string()))?;
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| open_err(format!("migrations failed: {e}")))?;

        let readers = Pool::builder()
            .max_size(4)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(Pragmas))
            .build(ConnectionManager::<SqliteConnection>::new(url))
            .map_err(|e| open_err(e.to_string()))?;

        let (writer, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx))
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
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn: &mut SqliteConnection| {
            let result = conn.transaction(f);
            Box::new(move |commit: Result<(), StoreError>| {
                let out = match (commit, result) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(v)) => Ok(v),
                    (Ok(()), Err(e)) => Err(StoreError::Write(e.to_string())),
                };
                let _ = tx.send(out);
            }) as Completion
        });
        let sent = self.writer.send(WriteOp::Job(job)).is_ok();
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
}

/// Copy the WAL back into the database file every so often, off the writer's path, so
/// commits never wait for a checkpoint and the WAL does not grow without bound.
fn checkpoint_loop(
    readers: Pool<ConnectionManager<SqliteConnection>>,
    alive: mpsc::WeakUnboundedSender<WriteOp>,
) {
    while alive.upgrade().is_some() {
        std::thread::sleep(Duration::from_millis(250));
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

fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::UnboundedReceiver<WriteOp>) {
    let mut batch = Vec::with_capacity(1024);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        write_batch(&mut conn, &mut batch);
    }
    log::debug!("message store writer stopped");
}

fn write_batch(conn: &mut SqliteConnection, batch: &mut Vec<WriteOp>) {
    let mut dones: Vec<Done> = Vec::new();
    // Writes refused one by one (a duplicate key), reported after the commit.
    let mut refused: Vec<(Done, StoreError)> = Vec::new();
    let mut completions: Vec<Completion> = Vec::new();
    // Several status changes of one message in one batch collapse to the last one.
    let mut updates: HashMap<i64, StatusUpdate> = HashMap::new();
    let merge = |u: StatusUpdate, updates: &mut HashMap<i64, StatusUpdate>| match updates.get(&u.id)
    {
        Some(old) if old.status > u.status => {}
        _ => {
            updates.insert(u.id, u);
        }
    };
    // Message rows are inserted many to a statement, after the loop; a keyed row goes
    // alone, to learn whether its key was new.
    let mut rows: Vec<MessageRow> = Vec::new();
    let result = conn.immediate_transaction(|c| -> QueryResult<()> {
        for op in batch.drain(..) {
            match op {
                WriteOp::Insert(row, done) if row.session_key.is_some() => {
                    let inserted = diesel::insert_or_ignore_into(message::table)
                        .values(&*row)
                        .execute(c)?;
                    match (inserted, done) {
                        (0, Some(done)) => {
                            let key = row.session_key.clone().unwrap_or_default();
                            refused.push((done, StoreError::Duplicate(key)));
                        }
                        (_, done) => dones.extend(done),
                    }
                }
                WriteOp::Insert(row, done) => {
                    rows.push(*row);
                    dones.extend(done);
                }
                WriteOp::InsertAndUpdate(row, update, done) => {
                    rows.push(*row);
                    merge(update, &mut updates);
                    dones.extend(done);
                }
                WriteOp::Update(update, done) => {
                    merge(update, &mut updates);
                    dones.extend(done);
                }
                WriteOp::Event(event) => {
                    diesel::insert_into(event_log::table)
                        .values(&event)
                        .execute(c)?;
                }
                WriteOp::Job(job) => completions.push(job(c)),
                WriteOp::Flush(done) => dones.push(done),
            }
        }
        // Fixed-size groups reuse one prepared statement (diesel caches array inserts);
        // the remainder goes one row at a time, also through a cached statement.
        let mut groups = rows.chunks_exact(ROWS_PER_INSERT);
        for group in &mut groups {
            if let Ok(group) = <&[MessageRow; ROWS_PER_INSERT]>::try_from(group) {
                diesel::insert_into(message::table)
                    .values(group)
                    .execute(c)?;
            }
        }
        for row in groups.remainder() {
            diesel::insert_into(message::table).values(row).execute(c)?;
        }
        // The common changes (delivered, completed without error) are applied to many
        // messages per statement; the request's processed time is the commit's.
        let mut delivered = Vec::new();
        let mut completed = Vec::new();
        let mut processed_at = None;
        for (id, u) in updates.drain() {
            match (u.status, &u.error_text) {
                (Status::Delivered, None) => delivered.push(id),
                (Status::Completed, None) => {
                    if processed_at.is_none() {
                        processed_at = u.processed.clone();
                    }
                    completed.push(id)
                }
                _ => {
                    diesel::update(message::table.find(id))
                        .set((
                            message::status.eq(u.status.as_str()),
                            message::is_error.eq(u.status == Status::Error),
                            message::error_text.eq(u.error_text),
                            message::processed.eq(u.processed),
                        ))
                        .execute(c)?;
                }
            }
        }
        for ids in delivered.chunks(IDS_PER_UPDATE) {
            // Never step a message back from a later status.
            diesel::update(
                message::table
                    .filter(message::id.eq_any(ids))
                    .filter(message::status.eq(Status::Queued.as_str())),
            )
            .set(message::status.eq(Status::Delivered.as_str()))
            .execute(c)?;
        }
        for ids in completed.chunks(IDS_PER_UPDATE) {
            diesel::update(message::table.filter(message::id.eq_any(ids)))
                .set((
                    message::status.eq(Status::Completed.as_str()),
                    message::is_error.eq(false),
                    message::processed.eq(&processed_at),
                ))
                .execute(c)?;
        }
        Ok(())
    });
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
        let max: Option<i64> = db.read_blocking(|c| {
            message::table
                .select(diesel::dsl::max(message::id))
                .first(c)
        })?;
        Ok(Self {
            db,
            next_id: AtomicI64::new(max.unwrap_or(0) + 1),
            persist,
        })
    }

    pub fn db(&self) -> &EmbeddedDb {
        &self.db
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
        self.write(|done| WriteOp::Insert(Box::new(row), done))
    }

    fn insert_and_update(&self, row: MessageRow, update: StatusUpdate) -> Durable {
        self.write(|done| WriteOp::InsertAndUpdate(Box::new(row), update, done))
    }

    fn update(&self, update: StatusUpdate) -> Durable {
        self.write(|done| WriteOp::Update(update, done))
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
        let cutoff = cutoff.to_string();
        self.db.read_blocking(move |c| {
            c.batch_execute("PRAGMA busy_timeout = 30000;")?;
            diesel::delete(
                message::table
                    .filter(message::created.lt(cutoff))
                    .filter(message::status.ne_all(["queued", "delivered"])),
            )
            .execute(c)
        })
    }
}

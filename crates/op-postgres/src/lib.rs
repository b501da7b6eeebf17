//! op-postgres: the business operation over the external PostgreSQL database (the
//! tutorial's `DemoData` server, reached in IRIS through a SQL outbound adapter). It
//! upserts each `FormationRequest` into `public.formation`, keyed by id, and replies
//! `FormationStored`. A batch of queued requests is written with one multi-row upsert.
//! Like an IRIS operation with `RetryInterval` / `FailureTimeout`, a write that fails for
//! a connection reason is retried until the failure timeout, then answered with an error;
//! the item starts even when the database is down. The table comes from the repository's
//! `migrations/postgres`, run on the first successful connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::Connection;
use formation_messages::{Formation, FormationRequest, FormationStored};
use interop::prelude::*;
use interop::Level;

mod sql;
mod target;

use sql::DbError;
use target::DbTarget;

pub use sql::{FormationRow, MIGRATIONS};

/// The diesel schema of the table the operation writes (`public.formation`).
pub mod schema {
    pub use crate::sql::formation;
}

/// The class name used in configuration.
pub const CLASS: &str = "op-postgres";

fn default_host() -> String {
    "db".into()
}
fn default_port() -> u16 {
    5432
}
fn default_demo() -> String {
    "DemoData".into()
}
fn default_connections() -> u32 {
    4
}
fn default_retry_interval_ms() -> u64 {
    1000
}
fn default_failure_timeout_ms() -> u64 {
    15_000
}
fn default_connect_timeout_ms() -> u64 {
    3000
}

/// Settings of `op-postgres`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Connection URL, `postgres://user:password@host:port/database`; when set, `host`,
    /// `port`, `database`, `user` and `password` are ignored. Percent-encode special
    /// characters of the user and password; write the password as `${ENV_VAR}`.
    #[serde(default)]
    pub url: Option<String>,
    /// Server host name or address (without `url`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port (without `url`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database name (without `url`).
    #[serde(default = "default_demo")]
    pub database: String,
    /// User name (without `url`).
    #[serde(default = "default_demo")]
    pub user: String,
    /// Password (without `url`); write it as `${ENV_VAR}` rather than in clear.
    #[serde(default = "default_demo")]
    pub password: String,
    /// Maximum connections of each instance's pool.
    #[serde(default = "default_connections")]
    pub connections: u32,
    /// Time between two tries of a write that failed for a connection reason (IRIS
    /// `RetryInterval`).
    #[serde(default = "default_retry_interval_ms")]
    pub retry_interval_ms: u64,
    /// How long after its first try a write keeps being retried before the request gets
    /// an error reply (IRIS `FailureTimeout`); 0 tries once.
    #[serde(default = "default_failure_timeout_ms")]
    pub failure_timeout_ms: u64,
    /// How long one try waits for a connection (the pool's timeout; libpq's
    /// `connect_timeout`, in whole seconds and at least 2, when the URL has none).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            url: None,
            host: default_host(),
            port: default_port(),
            database: default_demo(),
            user: default_demo(),
            password: default_demo(),
            connections: default_connections(),
            retry_interval_ms: default_retry_interval_ms(),
            failure_timeout_ms: default_failure_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url.as_deref().map(interop::config::redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"***")
            .field("connections", &self.connections)
            .field("retry_interval_ms", &self.retry_interval_ms)
            .field("failure_timeout_ms", &self.failure_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

request_set! {
    /// What `op-postgres` accepts.
    pub enum PostgresRequest { Formation(FormationRequest) }
}

type PgPool = Pool<ConnectionManager<PgConnection>>;

/// The PostgreSQL operation: one pool per instance, created without connecting.
pub struct PostgresOperation {
    item: String,
    target: Arc<DbTarget>,
    /// `postgres:<host>/<db>.public.formation`, for the replies.
    location: String,
    pool: PgPool,
    /// Set once the migrations ran on this instance's server.
    migrated: Arc<AtomicBool>,
    retry_interval: Duration,
    failure_timeout: Duration,
    connect_timeout: Duration,
    /// The last connection error seen, to explain a pool timeout that carries none.
    last_connect_error: Option<String>,
}

/// A write that did not go through, and whether it was about the connection.
struct WriteFailure {
    error: HostError,
    retryable: bool,
}

/// r2d2 reports each failed background connect; our own events already say what matters,
/// so these go to the debug log, password masked.
#[derive(Debug)]
struct PoolErrors(Arc<DbTarget>);

impl r2d2::HandleError<diesel::r2d2::Error> for PoolErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        log::debug!(
            "PostgreSQL {}: {}",
            self.0.display(),
            one_line(&self.0.redact(&error.to_string()))
        );
    }
}

/// libpq's messages span lines with tabs: make them one line for events and replies.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.trim_end_matches('.').to_string()
}

fn setting_error(item: &str, setting: &str, what: &str) -> HostError {
    HostError::new(format!("item '{item}': setting '{setting}' {what}"))
}

/// "formation 42" or "3 formations (ids 1 to 9)".
fn describe(formations: &[&Formation]) -> String {
    match formations {
        [one] => format!("formation {}", one.id),
        many => {
            let min = many.iter().map(|f| f.id).min().unwrap_or_default();
            let max = many.iter().map(|f| f.id).max().unwrap_or_default();
            format!("{} formations (ids {min} to {max})", many.len())
        }
    }
}

/// One try of a write: a pooled connection, the migrations if not yet run, the upsert.
fn attempt(
    pool: &PgPool,
    migrated: &AtomicBool,
    rows: &[FormationRow],
    wait: Duration,
) -> Result<(), DbError> {
    let mut conn = pool
        .get_timeout(wait)
        .map_err(|e| DbError::Connect(e.to_string()))?;
    if !migrated.load(Ordering::Acquire) {
        sql::migrate(&mut conn)?;
        migrated.store(true, Ordering::Release);
    }
    sql::upsert(&mut conn, rows)?;
    Ok(())
}

impl PostgresOperation {
    fn stored(&self, id: i64) -> HostResult<AnyMessage> {
        AnyMessage::new(&FormationStored {
            id,
            location: self.location.clone(),
        })
    }

    /// Refuse what PostgreSQL `text` cannot hold before going to the server.
    fn check(&self, f: &Formation) -> HostResult<()> {
        for (field, value) in [("nom", &f.nom), ("salle", &f.salle)] {
            if value.contains('\0') {
                return Err(HostError::new(format!(
                    "item '{}': formation {}: '{field}' contains a NUL character, which PostgreSQL text cannot store",
                    self.item, f.id
                )));
            }
        }
        Ok(())
    }

    /// The error text to show, password masked; a bare pool timeout gets the last
    /// connection error seen.
    fn explain(&mut self, error: &DbError, wait: Duration) -> String {
        let text = one_line(&self.target.redact(&error.to_string()));
        match error {
            DbError::Connect(_) => match text.split_once(": ") {
                Some((_, detail)) => {
                    let detail = detail
                        .strip_prefix("Failed to connect to database: ")
                        .unwrap_or(detail)
                        .to_string();
                    self.last_connect_error = Some(detail.clone());
                    format!("no connection within {} ms: {detail}", wait.as_millis())
                }
                None => match &self.last_connect_error {
                    Some(last) => format!(
                        "no connection within {} ms (last connection error: {last})",
                        wait.as_millis()
                    ),
                    None => format!("no connection within {} ms", wait.as_millis()),
                },
            },
            DbError::Query { .. } => text,
        }
    }

    /// Upsert `formations` (one statement, duplicates resolved), retrying connection
    /// failures every `retry_interval` until `failure_timeout` after the first try.
    async fn write(
        &mut self,
        ctx: &MessageContext,
        formations: &[&Formation],
    ) -> Result<(), WriteFailure> {
        let rows = Arc::new(sql::dedupe(formations.iter().copied()));
        let what = describe(formations);
        let server = self.target.display();
        let start = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let remaining = self.failure_timeout.saturating_sub(start.elapsed());
            let wait = if remaining.is_zero() {
                self.connect_timeout
            } else {
                self.connect_timeout.min(remaining)
            };
            let (pool, migrated, batch) = (self.pool.clone(), self.migrated.clone(), rows.clone());
            let outcome =
                tokio::task::spawn_blocking(move || attempt(&pool, &migrated, &batch, wait))
                    .await
                    .unwrap_or_else(|e| {
                        Err(DbError::Query {
                            retryable: false,
                            text: format!("the database task failed: {e}"),
                        })
                    });
            let error = match outcome {
                Ok(()) => {
                    if attempts > 1 {
                        ctx.log(
                            Level::Info,
                            &format!(
                                "write of {what} to PostgreSQL {server} succeeded at try {attempts}, after {} ms",
                                start.elapsed().as_millis()
                            ),
                        );
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            let detail = self.explain(&error, wait);
            if !error.retryable() {
                return Err(WriteFailure {
                    error: HostError::new(format!(
                        "item '{}': write of {what} to PostgreSQL {server} failed: {detail} (not retried: retrying cannot fix this error)",
                        self.item
                    )),
                    retryable: false,
                });
            }
            let elapsed = start.elapsed();
            if elapsed + self.retry_interval > self.failure_timeout {
                return Err(WriteFailure {
                    error: HostError::new(format!(
                        "item '{}': write of {what} to PostgreSQL {server} failed: {detail}; gave up after {} ms ({attempts} {}, retry_interval_ms = {}, failure_timeout_ms = {})",
                        self.item,
                        elapsed.as_millis(),
                        if attempts == 1 { "try" } else { "tries" },
                        self.retry_interval.as_millis(),
                        self.failure_timeout.as_millis()
                    )),
                    retryable: true,
                });
            }
            if attempts == 1 {
                ctx.log(
                    Level::Warn,
                    &format!(
                        "write of {what} to PostgreSQL {server} failed: {detail}; retrying every {} ms for up to {} ms",
                        self.retry_interval.as_millis(),
                        self.failure_timeout.as_millis()
                    ),
                );
            }
            tokio::time::sleep(self.retry_interval).await;
        }
    }
}

impl BusinessOperation for PostgresOperation {
    const CLASS: &'static str = CLASS;
    type Settings = Settings;
    type Request = PostgresRequest;

    fn new(settings: Settings, ctx: &HostContext) -> HostResult<Self> {
        let item = ctx.item().to_string();
        if settings.connections == 0 {
            return Err(setting_error(&item, "connections", "must be at least 1"));
        }
        if settings.connect_timeout_ms == 0 {
            return Err(setting_error(
                &item,
                "connect_timeout_ms",
                "must be at least 1",
            ));
        }
        if settings.retry_interval_ms == 0 {
            return Err(setting_error(
                &item,
                "retry_interval_ms",
                "must be at least 1",
            ));
        }
        let target = match &settings.url {
            Some(url) => DbTarget::from_url(url, settings.connect_timeout_ms)
                .map_err(|e| setting_error(&item, "url", &e))?,
            None => {
                if settings.host.trim().is_empty() {
                    return Err(setting_error(&item, "host", "is empty"));
                }
                if settings.port == 0 {
                    return Err(setting_error(&item, "port", "must be between 1 and 65535"));
                }
                if settings.database.trim().is_empty() {
                    return Err(setting_error(&item, "database", "is empty"));
                }
                DbTarget::from_parts(
                    &settings.host,
                    settings.port,
                    &settings.database,
                    &settings.user,
                    &settings.password,
                    settings.connect_timeout_ms,
                )
            }
        };
        let target = Arc::new(target);
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        let pool = Pool::builder()
            .max_size(settings.connections)
            .min_idle(Some(0))
            .connection_timeout(connect_timeout)
            .error_handler(Box::new(PoolErrors(target.clone())))
            .build_unchecked(ConnectionManager::<PgConnection>::new(
                target.conninfo.clone(),
            ));
        Ok(Self {
            item,
            location: target.location(),
            target,
            pool,
            migrated: Arc::new(AtomicBool::new(false)),
            retry_interval: Duration::from_millis(settings.retry_interval_ms),
            failure_timeout: Duration::from_millis(settings.failure_timeout_ms),
            connect_timeout,
            last_connect_error: None,
        })
    }

    /// Connect once and run the migrations; an unreachable server is only a warning.
    async fn on_init(&mut self, ctx: &HostContext) -> HostResult<()> {
        let target = self.target.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&target.conninfo)
                .map_err(|e| DbError::Connect(e.to_string()))?;
            sql::migrate(&mut conn)
        })
        .await
        .unwrap_or_else(|e| {
            Err(DbError::Query {
                retryable: true,
                text: format!("the database task failed: {e}"),
            })
        });
        let server = self.target.display();
        match outcome {
            Ok(()) => {
                self.migrated.store(true, Ordering::Release);
                ctx.info(&format!(
                    "connected to PostgreSQL {server}; table public.formation is ready"
                ));
            }
            Err(e) => {
                let detail = one_line(&self.target.redact(&e.to_string()));
                let detail = detail
                    .strip_prefix("Failed to connect to database: ")
                    .unwrap_or(&detail)
                    .to_string();
                let what = if matches!(e, DbError::Connect(_)) {
                    self.last_connect_error = Some(detail.clone());
                    "is not reachable"
                } else {
                    "could not be prepared"
                };
                ctx.warn(&format!(
                    "PostgreSQL {server} {what} at start: {detail}; the operation runs anyway, \
                     connects and migrates before its first write, and retries writes every {} ms \
                     for up to {} ms",
                    self.retry_interval.as_millis(),
                    self.failure_timeout.as_millis()
                ));
            }
        }
        Ok(())
    }

    async fn on_message(
        &mut self,
        ctx: &MessageContext,
        request: PostgresRequest,
    ) -> HostResult<AnyMessage> {
        let PostgresRequest::Formation(request) = request;
        self.check(&request.formation)?;
        self.write(ctx, &[&request.formation])
            .await
            .map_err(|f| f.error)?;
        self.stored(request.formation.id)
    }

    /// The throughput path: the whole batch in one upsert, one reply per request. Rows
    /// refused up front get their own error; when the server refuses the batch for a
    /// reason that is not the connection, each row is written alone so that only the
    /// faulty ones fail.
    async fn on_batch(
        &mut self,
        batch: Vec<(MessageContext, PostgresRequest)>,
    ) -> Vec<HostResult<AnyMessage>> {
        let Some((first_ctx, _)) = batch.first() else {
            return Vec::new();
        };
        let first_ctx = first_ctx.clone();
        let formations: Vec<&Formation> = batch
            .iter()
            .map(|(_, PostgresRequest::Formation(r))| &r.formation)
            .collect();
        let checked: Vec<HostResult<()>> = formations.iter().map(|f| self.check(f)).collect();
        let good: Vec<&Formation> = formations
            .iter()
            .zip(&checked)
            .filter(|(_, c)| c.is_ok())
            .map(|(f, _)| *f)
            .collect();
        let outcome = if good.is_empty() {
            Ok(())
        } else {
            self.write(&first_ctx, &good).await
        };
        match outcome {
            Err(failure) if !failure.retryable && good.len() > 1 => {
                first_ctx.log(
                    Level::Warn,
                    &format!(
                        "{}; writing the {} rows one by one",
                        failure.error.message,
                        good.len()
                    ),
                );
                let mut replies = Vec::with_capacity(batch.len());
                for ((ctx, _), (f, c)) in batch.iter().zip(formations.iter().zip(checked)) {
                    let reply = match c {
                        Err(e) => Err(e),
                        Ok(()) => match self.write(ctx, &[f]).await {
                            Ok(()) => self.stored(f.id),
                            Err(failure) => Err(failure.error),
                        },
                    };
                    replies.push(reply);
                }
                replies
            }
            outcome => formations
                .iter()
                .zip(checked)
                .map(|(f, c)| {
                    c?;
                    match &outcome {
                        Ok(()) => self.stored(f.id),
                        Err(failure) => Err(failure.error.clone()),
                    }
                })
                .collect(),
        }
    }
}

/// Register `op-postgres` and the formation message types.
pub fn register(registry: &mut interop::Registry) {
    formation_messages::register(registry);
    registry.operation::<PostgresOperation>();
}

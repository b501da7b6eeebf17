//! The message store: every request and reply with its header, and the event log.
//!
//! The production talks to it through [`MessageStore`] only, so another backend
//! (PostgreSQL, for productions spread over machines) can stand in. The SQLite store
//! writes through one dedicated writer thread that commits whatever queued up while the
//! previous commit ran (group commit): with many sessions in flight, durability costs one
//! commit per batch instead of one per message.

mod raw;
mod schema;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::StoreError;

pub use sqlite::{EmbeddedDb, SqliteStore, MIGRATIONS};

/// The store's table definitions, for benchmarks that write the same rows bare.
#[doc(hidden)]
pub mod schema_for_bench {
    pub use super::schema::{message_data, message_name};
}

/// Request or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Request,
    Reply,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Reply => "reply",
        }
    }

    /// As stored in `message_data.kind`.
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "request" => Kind::Request,
            "reply" => Kind::Reply,
            _ => return None,
        })
    }
}

/// A message's processing status (IRIS `Ens.DataType.MessageStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Stored, not yet picked up by its target.
    Queued,
    /// Its target is handling it.
    Delivered,
    /// Replied to (requests) or handed back (replies).
    Completed,
    /// Ended in an error; resendable.
    Error,
    /// Given up on (e.g. a reply that came after its sender's timeout).
    Discarded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Delivered => "delivered",
            Status::Completed => "completed",
            Status::Error => "error",
            Status::Discarded => "discarded",
        }
    }

    /// As stored in `message_data.status`.
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Status::Queued,
            "delivered" => Status::Delivered,
            "completed" => Status::Completed,
            "error" => Status::Error,
            "discarded" => Status::Discarded,
            _ => return None,
        })
    }
}

/// Event-log levels; `Alert` is what IRIS sends to `Ens.Alert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Alert,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Alert => "alert",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" => Level::Error,
            "alert" => Level::Alert,
            _ => return None,
        })
    }

    pub fn to_log(self) -> log::Level {
        match self {
            Level::Trace => log::Level::Debug,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error | Level::Alert => log::Level::Error,
        }
    }
}

/// One stored message: the IRIS header and the JSON body.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = schema::message)]
pub struct MessageRow {
    pub id: i64,
    pub session_id: i64,
    pub parent_id: Option<i64>,
    pub source: String,
    pub target: String,
    pub type_name: String,
    pub kind: String,
    pub status: String,
    pub is_error: bool,
    pub error_text: Option<String>,
    pub created: String,
    pub processed: Option<String>,
    pub body: String,
    /// Set on the first request of a session a service started with an idempotency key:
    /// a second input with the same key is refused as a duplicate.
    pub session_key: Option<String>,
}

/// A change of a stored message's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusUpdate {
    pub id: i64,
    pub status: Status,
    pub error_text: Option<String>,
    pub processed: Option<String>,
}

/// One event-log entry.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = schema::event_log)]
pub struct EventRow {
    pub id: i64,
    pub time: String,
    pub level: String,
    pub item: Option<String>,
    pub session_id: Option<i64>,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Insertable)]
#[diesel(table_name = schema::event_log)]
pub struct NewEvent {
    pub time: String,
    pub level: String,
    pub item: Option<String>,
    pub session_id: Option<i64>,
    pub text: String,
}

/// Message search (the message viewer's filters); newest first.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MessageFilter {
    pub session: Option<i64>,
    pub source: Option<String>,
    pub target: Option<String>,
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    pub status: Option<String>,
    /// Only ids below this one (pagination).
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// Event-log search; newest first.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EventFilter {
    pub level: Option<String>,
    pub item: Option<String>,
    pub session: Option<i64>,
    pub limit: Option<i64>,
}

/// Resolves when a write is durable (committed), or with the reason it is not.
pub struct Durable(Option<oneshot::Receiver<Result<(), StoreError>>>);

impl Durable {
    /// Already durable (or nothing to wait for).
    pub fn ready() -> Self {
        Durable(None)
    }

    /// Never durable: the write was refused before it reached the store.
    pub(crate) fn failed(error: StoreError) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(error));
        Durable(Some(rx))
    }

    pub(crate) fn pending(rx: oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Durable(Some(rx))
    }
}

impl Future for Durable {
    type Output = Result<(), StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.as_mut() {
            None => Poll::Ready(Ok(())),
            Some(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(StoreError::Closed))),
        }
    }
}

/// The one interface between the production and where its messages are kept.
/// Writes return a [`Durable`] to await; queries block (call them off the async threads).
pub trait MessageStore: Send + Sync + 'static {
    /// A new message id; ids grow in the order messages are created.
    fn next_id(&self) -> i64;
    /// The id `next_id` would give, without taking it.
    fn peek_id(&self) -> i64;
    fn insert(&self, row: MessageRow) -> Durable;
    /// A request nobody waits to be durable (one a process sends on): the store may hold
    /// it back while it is in flight and write it once, in its final status. A crash may
    /// lose it; recovery re-runs its session from the session's first request.
    fn insert_in_flight(&self, row: MessageRow) {
        drop(self.insert(row));
    }
    /// Several writes that commit together (a reply and its request's new status).
    fn insert_and_update(&self, row: MessageRow, update: StatusUpdate) -> Durable;
    fn update(&self, update: StatusUpdate) -> Durable;
    /// [`MessageStore::update`] for a caller that does not wait for it.
    fn update_detached(&self, update: StatusUpdate) {
        drop(self.update(update));
    }
    /// [`MessageStore::insert_and_update`] for a caller that does not wait for it.
    fn insert_and_update_detached(&self, row: MessageRow, update: StatusUpdate) {
        drop(self.insert_and_update(row, update));
    }
    fn event(&self, event: NewEvent);
    /// Resolves once everything written before it is durable.
    fn flush(&self) -> Durable;
    /// Whether messages are persisted at all (false only when measuring without).
    fn persistent(&self) -> bool;

    fn message(&self, id: i64) -> Result<Option<MessageRow>, StoreError>;
    fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRow>, StoreError>;
    /// A session's messages in causal order.
    fn trace(&self, session_id: i64) -> Result<Vec<MessageRow>, StoreError>;
    fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError>;
    /// Requests that never completed (queued or delivered), oldest first: what a restart
    /// re-delivers.
    fn unfinished_requests(&self) -> Result<Vec<MessageRow>, StoreError>;
    /// Delete completed messages created before `cutoff` (RFC 3339); never unfinished ones.
    fn purge(&self, cutoff: &str) -> Result<usize, StoreError>;
}

/// The oldest session that still has an unfinished request (queued or delivered): a
/// restart re-delivers sessions from there on, so journals that only serve re-deliveries
/// may forget what is older. Scans the message table: call it at start-up, not per message.
pub fn oldest_unfinished_session(conn: &mut diesel::SqliteConnection) -> QueryResult<Option<i64>> {
    use schema::message_data as m;
    m::table
        .filter(m::kind.eq(0))
        .filter(m::status.eq_any([Status::Queued.code(), Status::Delivered.code()]))
        .select(diesel::dsl::min(m::session_id))
        .first(conn)
}

/// The id the next message would get: every session so far is below it.
pub fn next_message_id(conn: &mut diesel::SqliteConnection) -> QueryResult<i64> {
    use schema::message_data as m;
    let max: Option<i64> = m::table.select(diesel::dsl::max(m::id)).first(conn)?;
    Ok(max.unwrap_or(0) + 1)
}

/// Microseconds since the Unix epoch of a time as [`now`] writes it
/// (`2026-12-03T20:01:39.076833Z`); any other RFC 3339 time is parsed the slow way, and
/// one that is not a time at all counts as the epoch.
pub(crate) fn micros(ts: &str) -> i64 {
    fn fixed(ts: &str) -> Option<i64> {
        let b = ts.as_bytes();
        if b.len() != 27 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' || b[26] != b'Z' {
            return None;
        }
        let num = |from: usize, to: usize| -> Option<u32> { ts.get(from..to)?.parse().ok() };
        let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
        let time = chrono::NaiveTime::from_hms_micro_opt(
            num(11, 13)?,
            num(14, 16)?,
            num(17, 19)?,
            num(20, 26)?,
        )?;
        Some(date.and_time(time).and_utc().timestamp_micros())
    }
    fixed(ts)
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(ts)
                .ok()
                .map(|t| t.timestamp_micros())
        })
        .unwrap_or(0)
}

/// Current time as stored: RFC 3339, UTC, microseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_convert_to_microseconds_and_back() {
        let t = now();
        let m = micros(&t);
        let back = chrono::DateTime::from_timestamp_micros(m)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        assert_eq!(back, t);
        assert_eq!(micros("1970-01-01T00:00:00.000001Z"), 1);
        // Other RFC 3339 forms are parsed too; what is not a time counts as the epoch.
        assert_eq!(micros("1970-01-01T01:00:00+01:00"), 0);
        assert_eq!(
            micros("2026-12-03T20:01:39Z"),
            micros("2026-12-03T20:01:39.000000Z")
        );
        assert_eq!(micros("yesterday"), 0);
        assert_eq!(micros("2026-13-03T20:01:39.076833Z"), 0);
    }
}

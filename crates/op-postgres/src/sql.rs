//! The SQL of the operation, as plain functions over a `PgConnection`: the `formation`
//! table, its migrations and the multi-row upsert.

use std::collections::BTreeMap;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::upsert::excluded;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use formation_messages::Formation;

/// The repository's `migrations/postgres`: creates `public.formation` if missing.
pub const MIGRATIONS: EmbeddedMigrations =
    diesel_migrations::embed_migrations!("../../migrations/postgres");

/// Advisory lock key held while migrating, so that several instances (or productions)
/// starting together do not race on `CREATE TABLE`.
const MIGRATION_LOCK: i64 = 0x6f70_5f70_6773; // "op_pgs"

/// Rows per INSERT statement: PostgreSQL takes at most 65535 bind parameters (3 per row).
const ROWS_PER_STATEMENT: usize = 10_000;

diesel::table! {
    public.formation (id) {
        id -> BigInt,
        nom -> Text,
        salle -> Text,
    }
}

#[derive(Insertable, Queryable, Selectable, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = formation)]
pub struct FormationRow {
    pub id: i64,
    pub nom: String,
    pub salle: String,
}

/// Why a database step failed, and whether trying again later may succeed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had from the pool (server down, refused, timed out).
    #[error("{0}")]
    Connect(String),
    /// The statement or migration failed.
    #[error("{text}")]
    Query { retryable: bool, text: String },
}

impl DbError {
    /// Connection trouble (retry until the failure timeout) vs. errors about the data or
    /// the schema that retrying cannot fix.
    pub fn retryable(&self) -> bool {
        match self {
            DbError::Connect(_) => true,
            DbError::Query { retryable, .. } => *retryable,
        }
    }
}

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        let retryable = diesel_retryable(&e);
        DbError::Query {
            retryable,
            text: e.to_string(),
        }
    }
}

fn diesel_retryable(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::SerializationFailure => true,
            // 40P01 and 57P0x have no kind of their own in diesel.
            _ => {
                let m = info.message();
                m.contains("deadlock detected")
                    || m.contains("terminating connection")
                    || m.contains("the database system is")
            }
        },
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

/// Run the pending migrations under an advisory lock.
pub fn migrate(conn: &mut PgConnection) -> Result<(), DbError> {
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
        .execute(conn)?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| {
            // diesel_migrations does not expose its error type: whether the connection
            // still answers tells a lost server from a migration the server refused.
            let retryable = e
                .downcast_ref::<DieselError>()
                .is_some_and(diesel_retryable)
                || diesel::sql_query("SELECT 1").execute(conn).is_err();
            DbError::Query {
                retryable,
                text: format!("migration of public.formation failed: {e}"),
            }
        });
    // A failed unlock only matters on a connection about to be dropped as broken.
    let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
        .execute(conn);
    result
}

/// The rows to write for a batch: one per id, the last one given winning, ordered by id
/// (a fixed lock order, so concurrent batches cannot deadlock on each other).
pub fn dedupe<'a>(formations: impl IntoIterator<Item = &'a Formation>) -> Vec<FormationRow> {
    let mut last: BTreeMap<i64, &Formation> = BTreeMap::new();
    for f in formations {
        last.insert(f.id, f);
    }
    last.into_values()
        .map(|f| FormationRow {
            id: f.id,
            nom: f.nom.clone(),
            salle: f.salle.clone(),
        })
        .collect()
}

/// Insert or update `rows` (ids unique), in one statement when they fit, else in one
/// transaction of several statements.
pub fn upsert(conn: &mut PgConnection, rows: &[FormationRow]) -> Result<usize, DbError> {
    fn statement(conn: &mut PgConnection, rows: &[FormationRow]) -> QueryResult<usize> {
        diesel::insert_into(formation::table)
            .values(rows)
            .on_conflict(formation::id)
            .do_update()
            .set((
                formation::nom.eq(excluded(formation::nom)),
                formation::salle.eq(excluded(formation::salle)),
            ))
            .execute(conn)
    }
    if rows.is_empty() {
        return Ok(0);
    }
    if rows.len() <= ROWS_PER_STATEMENT {
        return Ok(statement(conn, rows)?);
    }
    let written = conn.transaction(|conn| {
        let mut n = 0;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            n += statement(conn, chunk)?;
        }
        QueryResult::Ok(n)
    })?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: i64, nom: &str) -> Formation {
        Formation {
            id,
            nom: nom.into(),
            salle: "S".into(),
        }
    }

    #[test]
    fn dedupe_keeps_the_last_value_and_sorts_by_id() {
        let input = [f(3, "a"), f(1, "b"), f(3, "c"), f(2, "d"), f(1, "e")];
        let rows = dedupe(&input);
        let got: Vec<(i64, &str)> = rows.iter().map(|r| (r.id, r.nom.as_str())).collect();
        assert_eq!(got, vec![(1, "e"), (2, "d"), (3, "c")]);
    }

    #[test]
    fn connection_errors_are_retryable_data_errors_are_not() {
        assert!(DbError::Connect("refused".into()).retryable());
        let closed = DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_string()),
        );
        assert!(DbError::from(closed).retryable());
        let unique = DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("duplicate key".to_string()),
        );
        assert!(!DbError::from(unique).retryable());
        assert!(!DbError::from(DieselError::NotFound).retryable());
    }
}

//! The store writer's one statement bound without copies: the multi-row message INSERT.
//!
//! rusqlite (like diesel) binds text as `SQLITE_TRANSIENT`, so SQLite copies every string
//! into its own allocation before building the record, which copies it again. For the
//! message rows, most of what the writer binds, that first copy and its malloc/free were
//! about a tenth of the writer's time. Here the strings are bound `SQLITE_STATIC`: they
//! only have to outlive the `step`, which [`RawInsert::execute`] guarantees by taking the
//! rows by reference and clearing the bindings before it returns.

use std::ffi::{c_int, CStr};
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;

/// A message row as `message_data` stores it: names as `message_name` ids, kind and
/// status as codes, times in microseconds.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Compact<'a> {
    pub id: i64,
    pub session_id: i64,
    pub parent_id: Option<i64>,
    pub source: i64,
    pub target: i64,
    pub type_name: i64,
    pub kind: i64,
    pub status: i64,
    pub is_error: bool,
    pub error_text: Option<&'a str>,
    pub created: i64,
    pub processed: Option<i64>,
    pub body: &'a str,
    pub session_key: Option<&'a str>,
}

/// A prepared INSERT of a fixed number of message rows (14 columns each, in
/// [`Compact`]'s order), kept for the writer's life.
pub(super) struct RawInsert {
    db: NonNull<ffi::sqlite3>,
    stmt: NonNull<ffi::sqlite3_stmt>,
    rows: usize,
}

pub(super) const MESSAGE_COLUMNS: usize = 14;

impl RawInsert {
    /// Prepare `sql` (which must bind `rows * MESSAGE_COLUMNS` parameters) on `db`.
    ///
    /// # Safety
    /// `db` must be an open connection that outlives the returned value and is used only
    /// from the thread that uses it.
    pub(super) unsafe fn prepare(
        db: *mut ffi::sqlite3,
        sql: &str,
        rows: usize,
    ) -> Result<Self, String> {
        let db = NonNull::new(db).ok_or("no database handle")?;
        let len = c_int::try_from(sql.len()).map_err(|e| e.to_string())?;
        let mut stmt = ptr::null_mut();
        let rc = ffi::sqlite3_prepare_v3(
            db.as_ptr(),
            sql.as_ptr().cast(),
            len,
            ffi::SQLITE_PREPARE_PERSISTENT,
            &mut stmt,
            ptr::null_mut(),
        );
        if rc != ffi::SQLITE_OK {
            return Err(error_text(db));
        }
        let stmt = NonNull::new(stmt).ok_or("empty statement")?;
        let expected = rows * MESSAGE_COLUMNS;
        if usize::try_from(ffi::sqlite3_bind_parameter_count(stmt.as_ptr())).ok() != Some(expected)
        {
            ffi::sqlite3_finalize(stmt.as_ptr());
            return Err(format!("statement does not bind {expected} parameters"));
        }
        Ok(Self { db, stmt, rows })
    }

    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Insert exactly `self.rows()` rows; returns how many were inserted (fewer with
    /// `INSERT OR IGNORE` when some were refused).
    pub(super) fn execute(&mut self, rows: &[Compact<'_>]) -> Result<usize, String> {
        if rows.len() != self.rows {
            return Err(format!(
                "{} rows for a {}-row insert",
                rows.len(),
                self.rows
            ));
        }
        let result = self.bind_and_step(rows);
        // SAFETY: `stmt` is a live statement of `db`. Clearing the bindings drops the
        // borrowed pointers into `rows` before this borrow ends.
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
        result
    }

    fn bind_and_step(&mut self, rows: &[Compact<'_>]) -> Result<usize, String> {
        let s = self.stmt.as_ptr();
        // SAFETY: `s` is a live prepared statement; text pointers come from `rows`, which
        // outlive the step below, and are bound SQLITE_STATIC only until `execute` clears
        // the bindings.
        unsafe {
            let mut rc = ffi::SQLITE_OK;
            for (n, row) in rows.iter().enumerate() {
                let at = (n * MESSAGE_COLUMNS) as c_int;
                let binds = [
                    ffi::sqlite3_bind_int64(s, at + 1, row.id),
                    ffi::sqlite3_bind_int64(s, at + 2, row.session_id),
                    bind_opt_int(s, at + 3, row.parent_id),
                    ffi::sqlite3_bind_int64(s, at + 4, row.source),
                    ffi::sqlite3_bind_int64(s, at + 5, row.target),
                    ffi::sqlite3_bind_int64(s, at + 6, row.type_name),
                    ffi::sqlite3_bind_int64(s, at + 7, row.kind),
                    ffi::sqlite3_bind_int64(s, at + 8, row.status),
                    ffi::sqlite3_bind_int64(s, at + 9, i64::from(row.is_error)),
                    bind_opt_text(s, at + 10, row.error_text),
                    ffi::sqlite3_bind_int64(s, at + 11, row.created),
                    bind_opt_int(s, at + 12, row.processed),
                    bind_text(s, at + 13, row.body),
                    bind_opt_text(s, at + 14, row.session_key),
                ];
                if let Some(&bad) = binds.iter().find(|&&b| b != ffi::SQLITE_OK) {
                    rc = bad;
                    break;
                }
            }
            if rc == ffi::SQLITE_OK {
                rc = ffi::sqlite3_step(s);
            }
            if rc == ffi::SQLITE_DONE {
                Ok(usize::try_from(ffi::sqlite3_changes(self.db.as_ptr())).unwrap_or(0))
            } else {
                Err(error_text(self.db))
            }
        }
    }
}

impl Drop for RawInsert {
    fn drop(&mut self) {
        // SAFETY: finalized once, before the connection closes (the writer drops its
        // statements before its connection).
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

unsafe fn bind_text(s: *mut ffi::sqlite3_stmt, at: c_int, text: &str) -> c_int {
    match c_int::try_from(text.len()) {
        Ok(len) => ffi::sqlite3_bind_text(s, at, text.as_ptr().cast(), len, ffi::SQLITE_STATIC()),
        Err(_) => ffi::SQLITE_TOOBIG,
    }
}

unsafe fn bind_opt_text(s: *mut ffi::sqlite3_stmt, at: c_int, text: Option<&str>) -> c_int {
    match text {
        Some(t) => bind_text(s, at, t),
        None => ffi::sqlite3_bind_null(s, at),
    }
}

unsafe fn bind_opt_int(s: *mut ffi::sqlite3_stmt, at: c_int, value: Option<i64>) -> c_int {
    match value {
        Some(v) => ffi::sqlite3_bind_int64(s, at, v),
        None => ffi::sqlite3_bind_null(s, at),
    }
}

fn error_text(db: NonNull<ffi::sqlite3>) -> String {
    // SAFETY: `db` is open; sqlite3_errmsg returns a NUL-terminated string it owns.
    unsafe {
        let msg = ffi::sqlite3_errmsg(db.as_ptr());
        if msg.is_null() {
            "unknown SQLite error".into()
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, body: &'static str, key: Option<&'static str>) -> Compact<'static> {
        Compact {
            id,
            session_id: 1,
            parent_id: (id > 1).then_some(1),
            source: 1,
            target: 2,
            type_name: 3,
            kind: 0,
            status: 2,
            is_error: id % 2 == 0,
            error_text: (id % 2 == 0).then_some("erreur é"),
            created: 1_796_328_099_076_833,
            processed: None,
            body,
            session_key: key,
        }
    }

    fn table() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE message_data (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL, \
             parent_id INTEGER, source INTEGER NOT NULL, target INTEGER NOT NULL, \
             type_name INTEGER NOT NULL, kind INTEGER NOT NULL, status INTEGER NOT NULL, \
             is_error BOOLEAN NOT NULL, error_text TEXT, created INTEGER NOT NULL, \
             processed INTEGER, body TEXT NOT NULL, session_key TEXT)",
        )
        .unwrap();
        conn
    }

    const SQL2: &str = "INSERT INTO message_data VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?), \
                        (?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

    type Stored = (
        i64,
        Option<i64>,
        i64,
        bool,
        Option<String>,
        i64,
        Option<i64>,
        String,
        Option<String>,
    );

    #[test]
    fn rows_are_stored_as_bound_and_a_failed_insert_leaves_the_statement_usable() {
        let conn = table();
        let mut insert = unsafe { RawInsert::prepare(conn.handle(), SQL2, 2) }.unwrap();
        let rows = vec![row(1, "{\"a\":\"é\"}", Some("k")), row(2, "", None)];
        assert_eq!(insert.execute(&rows), Ok(2));
        // Same ids again: refused with SQLite's reason, and nothing half-written.
        let err = insert.execute(&rows).unwrap_err();
        assert!(err.contains("UNIQUE"), "{err}");
        insert
            .execute(&[row(3, "x", None), row(4, "y", None)])
            .unwrap();
        assert!(insert.execute(&[row(5, "z", None)]).is_err());

        let mut stmt = conn
            .prepare(
                "SELECT id, parent_id, target, is_error, error_text, created, processed, body, \
                 session_key FROM message_data ORDER BY id",
            )
            .unwrap();
        let got: Vec<Stored> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got.len(), 4);
        let created = 1_796_328_099_076_833;
        assert_eq!(
            got[0],
            (
                1,
                None,
                2,
                false,
                None,
                created,
                None,
                "{\"a\":\"é\"}".into(),
                Some("k".into())
            )
        );
        assert_eq!(
            got[1],
            (
                2,
                Some(1),
                2,
                true,
                Some("erreur é".into()),
                created,
                None,
                String::new(),
                None
            )
        );
        assert_eq!(got[3].7, "y");
    }

    #[test]
    fn insert_or_ignore_counts_the_rows_it_kept() {
        let conn = table();
        conn.execute_batch("CREATE UNIQUE INDEX k ON message_data (session_key)")
            .unwrap();
        let sql = SQL2.replace("INSERT", "INSERT OR IGNORE");
        let mut insert = unsafe { RawInsert::prepare(conn.handle(), &sql, 2) }.unwrap();
        let first = [row(1, "a", Some("k1")), row(2, "b", Some("k2"))];
        assert_eq!(insert.execute(&first), Ok(2));
        let again = [row(3, "c", Some("k2")), row(4, "d", Some("k3"))];
        assert_eq!(insert.execute(&again), Ok(1));
    }

    #[test]
    fn a_statement_with_the_wrong_parameter_count_is_refused() {
        let conn = table();
        let result = unsafe { RawInsert::prepare(conn.handle(), SQL2, 3) };
        assert!(result.is_err());
    }
}

//! op-file: a business operation whose outbound adapter is a text file (the tutorial's
//! `FileOperation`). It appends one line per `FormationRequest`, `id : salle : nom`,
//! and replies only once the line is written to the file, so a completed reply means
//! the line is on disk.
//!
//! With the production's embedded database it keeps a journal (`file_journal`,
//! `file_offset`): the file length its completed writes add up to, and which
//! (session, formation id) lines it holds. After a crash, bytes past the committed length
//! are cut off (their requests never completed and will be re-delivered), and a
//! re-delivered request whose line is journaled is not written twice.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use diesel::prelude::*;
use interop::EmbeddedDb;

use formation_messages::{FormationRequest, FormationStored};
use interop::prelude::*;

/// Settings of `op-file`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Folder of the output file; created if missing.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// Name of the file lines are appended to.
    #[serde(default = "default_filename")]
    pub filename: String,
}

fn default_path() -> PathBuf {
    PathBuf::from("data/out")
}

fn default_filename() -> String {
    "formation.txt".to_string()
}

request_set! {
    /// What `op-file` accepts.
    pub enum FileRequest { Formation(FormationRequest) }
}

diesel::table! {
    file_journal (path, session_id, record_id) {
        path -> Text,
        session_id -> BigInt,
        record_id -> BigInt,
    }
}

diesel::table! {
    file_offset (path) {
        path -> Text,
        committed -> BigInt,
    }
}

/// The file operation: one open, buffered file per instance.
pub struct FileOperation {
    file_path: PathBuf,
    /// `None` only while a batch is being written on the blocking pool.
    writer: Option<BufWriter<File>>,
    /// The journal, when the production has an embedded database.
    journal: Option<EmbeddedDb>,
    /// Length of the file once everything written so far is flushed.
    length: u64,
}

/// The journal key of the file.
fn journal_path(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

impl FileOperation {
    fn line(request: &FormationRequest) -> String {
        let f = &request.formation;
        // One record per line: line breaks inside a field would split it.
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        format!("{} : {} : {}\n", f.id, clean(&f.salle), clean(&f.nom))
    }
}

impl BusinessOperation for FileOperation {
    const CLASS: &'static str = "op-file";
    type Settings = Settings;
    type Request = FileRequest;

    fn new(settings: Settings, _ctx: &HostContext) -> HostResult<Self> {
        if settings.filename.trim().is_empty() || settings.filename.contains('/') {
            return Err(HostError::new(format!(
                "setting 'filename': '{}' is not a plain file name",
                settings.filename
            )));
        }
        Ok(Self {
            file_path: settings.path.join(&settings.filename),
            writer: None,
            journal: None,
            length: 0,
        })
    }

    async fn on_init(&mut self, ctx: &HostContext) -> HostResult<()> {
        let path = self.file_path.clone();
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new().create(true).append(true).open(&path)
        })
        .await
        .map_err(|e| HostError::new(e.to_string()))?
        .map_err(|e| HostError::new(format!("cannot open {}: {e}", self.file_path.display())))?;
        let length = file
            .metadata()
            .map_err(|e| HostError::new(format!("cannot read {}: {e}", self.file_path.display())))?
            .len();
        self.length = length;
        if let Ok(db) = ctx.embedded_db() {
            self.recover(ctx, &db, &file).await?;
            self.journal = Some(db);
        }
        self.writer = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    async fn on_message(
        &mut self,
        ctx: &MessageContext,
        request: FileRequest,
    ) -> HostResult<AnyMessage> {
        let mut replies = self.on_batch(vec![(ctx.clone(), request)]).await;
        replies
            .pop()
            .unwrap_or_else(|| Err(HostError::new("no reply")))
    }

    async fn on_batch(
        &mut self,
        batch: Vec<(MessageContext, FileRequest)>,
    ) -> Vec<HostResult<AnyMessage>> {
        let location = self.file_path.display().to_string();
        let Some(mut writer) = self.writer.take() else {
            let e = HostError::new(format!("{location} is not open"));
            return batch.iter().map(|_| Err(e.clone())).collect();
        };
        let count = batch.len();
        let keys: Vec<(i64, i64)> = batch
            .iter()
            .map(|(ctx, FileRequest::Formation(r))| (ctx.session_id(), r.formation.id))
            .collect();
        // Re-delivered after a crash: lines the journal already holds are not written again.
        let replayed: Vec<(i64, i64)> = batch
            .iter()
            .zip(&keys)
            .filter(|((ctx, _), _)| ctx.replayed())
            .map(|(_, k)| *k)
            .collect();
        let done = match (&self.journal, replayed.is_empty()) {
            (Some(db), false) => match journaled(db, journal_path(&self.file_path), replayed).await
            {
                Ok(done) => done,
                Err(e) => {
                    self.writer = Some(writer);
                    return vec![Err(e); count];
                }
            },
            _ => Vec::new(),
        };
        let lines: Vec<String> = batch
            .iter()
            .zip(&keys)
            .filter(|(_, k)| !done.contains(k))
            .map(|((_, FileRequest::Formation(r)), _)| Self::line(r))
            .collect();
        let start = self.length;
        let written = tokio::task::spawn_blocking(move || {
            let mut bytes = 0u64;
            let mut result = Ok(());
            for line in &lines {
                if let Err(e) = writer.write_all(line.as_bytes()) {
                    result = Err(e);
                    break;
                }
                bytes += line.len() as u64;
            }
            let result = result.and_then(|()| writer.flush());
            if result.is_err() {
                // Leave no partial batch behind: its requests get an error and may be resent.
                let _ = writer.get_ref().set_len(start);
            }
            (writer, bytes, result)
        })
        .await;
        let (writer, bytes, result) = match written {
            Ok(w) => w,
            Err(e) => {
                // The writer was lost with the task: the next batch reports it not open.
                let e = HostError::new(format!("writing {location}: {e}"));
                return vec![Err(e); count];
            }
        };
        self.writer = Some(writer);
        if let Err(e) = result {
            let e = HostError::new(format!("writing {location}: {e}"));
            return vec![Err(e); count];
        }
        self.length += bytes;
        if let Some(db) = &self.journal {
            let new: Vec<(i64, i64)> = keys.iter().filter(|k| !done.contains(k)).copied().collect();
            // Queued, not awaited: the writer commits in queue order, so anything done
            // after this reply (the router's reply, the session's end) is durable only
            // if this journal entry is; a crash before it cuts these lines on restart
            // and the unfinished session writes them again.
            drop(record(db, journal_path(&self.file_path), new, self.length));
        }
        batch
            .iter()
            .map(|(_, FileRequest::Formation(r))| {
                AnyMessage::new(&FormationStored {
                    id: r.formation.id,
                    location: location.clone(),
                })
            })
            .collect()
    }

    async fn on_tear_down(&mut self, _ctx: &HostContext) {
        // Lines are flushed and journaled before each reply: nothing is pending here.
        if let Some(mut w) = self.writer.take() {
            let _ = w.flush();
        }
    }
}

impl FileOperation {
    /// Cut off what a crash left past the committed length, and start the journal of a
    /// file seen for the first time.
    async fn recover(&mut self, ctx: &HostContext, db: &EmbeddedDb, file: &File) -> HostResult<()> {
        let key = journal_path(&self.file_path);
        let committed: Option<i64> = {
            let key = key.clone();
            db.read(move |c| {
                file_offset::table
                    .find(key)
                    .select(file_offset::committed)
                    .first(c)
                    .optional()
            })
            .await?
        };
        match committed {
            Some(committed) if (committed as u64) < self.length => {
                let cut = self.length - committed as u64;
                file.set_len(committed as u64).map_err(|e| {
                    HostError::new(format!("cannot truncate {}: {e}", self.file_path.display()))
                })?;
                ctx.warn(&format!(
                    "{}: cut {cut} bytes written for requests that never completed (they are \
                     re-delivered)",
                    self.file_path.display()
                ));
                self.length = committed as u64;
            }
            Some(committed) if (committed as u64) > self.length => {
                ctx.warn(&format!(
                    "{} is shorter than its journal says ({} < {committed} bytes): it was \
                     truncated or replaced outside the production",
                    self.file_path.display(),
                    self.length
                ));
                record(db, key.clone(), Vec::new(), self.length).await?;
            }
            Some(_) => {}
            None => record(db, key.clone(), Vec::new(), self.length).await?,
        }
        // Only sessions still unfinished can be re-delivered: older journal rows go.
        let trimmed = db
            .write(move |c| {
                let keep_from = match interop::store::oldest_unfinished_session(c)? {
                    Some(session) => session,
                    None => interop::store::next_message_id(c)?,
                };
                diesel::delete(
                    file_journal::table
                        .filter(file_journal::path.eq(&key))
                        .filter(file_journal::session_id.lt(keep_from)),
                )
                .execute(c)
            })
            .await?;
        if trimmed > 0 {
            log::debug!(
                "{}: {trimmed} journal rows trimmed",
                self.file_path.display()
            );
        }
        Ok(())
    }
}

/// Which of `keys` (session, formation id) the journal holds for `path`.
async fn journaled(
    db: &EmbeddedDb,
    path: String,
    keys: Vec<(i64, i64)>,
) -> HostResult<Vec<(i64, i64)>> {
    db.read(move |c| {
        let mut found = Vec::new();
        for (session, id) in keys {
            let hit = file_journal::table
                .find((&path, session, id))
                .count()
                .get_result::<i64>(c)?;
            if hit > 0 {
                found.push((session, id));
            }
        }
        Ok(found)
    })
    .await
    .map_err(HostError::from)
}

/// Journal the lines just written and the file's new committed length, in one commit.
/// The write is queued when this is called (the returned future only reports it).
fn record(
    db: &EmbeddedDb,
    path: String,
    keys: Vec<(i64, i64)>,
    length: u64,
) -> impl std::future::Future<Output = HostResult<()>> {
    // No savepoint: these writes fail only when the database does, and then the whole
    // batch, this journal entry with it, does not commit.
    let written = db.write_in_batch(move |c| {
        for (session, id) in keys {
            diesel::insert_or_ignore_into(file_journal::table)
                .values((
                    file_journal::path.eq(&path),
                    file_journal::session_id.eq(session),
                    file_journal::record_id.eq(id),
                ))
                .execute(c)?;
        }
        diesel::replace_into(file_offset::table)
            .values((
                file_offset::path.eq(&path),
                file_offset::committed.eq(length as i64),
            ))
            .execute(c)?;
        Ok(())
    });
    async move { written.await.map_err(HostError::from) }
}

/// Register `op-file` and the messages it uses.
pub fn register(registry: &mut Registry) {
    formation_messages::register(registry);
    registry.operation::<FileOperation>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use formation_messages::Formation;
    use interop::testing::{settings_from_toml, TestContext};

    fn request(id: i64, nom: &str, salle: &str) -> FormationRequest {
        FormationRequest {
            formation: Formation {
                id,
                nom: nom.into(),
                salle: salle.into(),
            },
        }
    }

    fn settings(dir: &std::path::Path) -> Settings {
        Settings {
            path: dir.join("out"),
            filename: "formation.txt".into(),
        }
    }

    #[actix_rt::test]
    async fn each_request_appends_one_line_on_disk_before_the_reply() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = TestContext::new();
        let mut op = ctx
            .operation::<FileOperation>(settings(dir.path()))
            .await
            .unwrap();
        let reply = op.send(&request(3, "formation3", "salle3")).await.unwrap();
        assert_eq!(reply.decode::<FormationStored>().unwrap().id, 3);
        // Read while the operation still runs: the reply means the line is there.
        let text = std::fs::read_to_string(dir.path().join("out/formation.txt")).unwrap();
        assert_eq!(text, "3 : salle3 : formation3\n");
        op.send(&request(4, "Café ü", "Salle; B")).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("out/formation.txt")).unwrap();
        assert_eq!(text, "3 : salle3 : formation3\n4 : Salle; B : Café ü\n");
    }

    #[actix_rt::test]
    async fn a_batch_is_written_in_order_with_one_reply_each() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = TestContext::new();
        let mut op = ctx
            .operation::<FileOperation>(settings(dir.path()))
            .await
            .unwrap();
        let batch: Vec<_> = (1..=100).map(|i| request(i, "n", "s")).collect();
        let replies = op.send_batch(&batch).await;
        assert_eq!(replies.len(), 100);
        assert!(replies.iter().all(|r| r.is_ok()));
        let text = std::fs::read_to_string(dir.path().join("out/formation.txt")).unwrap();
        let ids: Vec<i64> = text
            .lines()
            .map(|l| l.split(" : ").next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    }

    #[actix_rt::test]
    async fn line_breaks_inside_fields_do_not_split_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut op = TestContext::new()
            .operation::<FileOperation>(settings(dir.path()))
            .await
            .unwrap();
        op.send(&request(7, "two\nlines", "room\r\n2"))
            .await
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("out/formation.txt")).unwrap();
        assert_eq!(text, "7 : room  2 : two lines\n");
    }

    #[actix_rt::test]
    async fn an_unwritable_folder_fails_on_init_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocker"), "x").unwrap();
        let s = Settings {
            path: dir.path().join("blocker"),
            filename: "f.txt".into(),
        };
        let err = match TestContext::new().operation::<FileOperation>(s).await {
            Err(e) => e,
            Ok(_) => panic!("a file as folder must fail"),
        };
        assert!(err.message.contains("blocker"), "{err}");
    }

    #[actix_rt::test]
    async fn other_message_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut op = TestContext::new()
            .operation::<FileOperation>(settings(dir.path()))
            .await
            .unwrap();
        let err = op.send(&Ack {}).await.unwrap_err();
        assert!(
            err.message.contains("unexpected message type 'Ack'"),
            "{err}"
        );
        assert!(err.message.contains("FormationRequest"), "{err}");
    }

    #[test]
    fn settings_have_defaults_and_refuse_unknown_keys() {
        let s: Settings = settings_from_toml("").unwrap();
        assert_eq!(s.filename, "formation.txt");
        let err = settings_from_toml::<Settings>("filenam = \"x\"").unwrap_err();
        assert!(err.contains("filenam"), "{err}");
    }

    #[actix_rt::test]
    async fn after_a_crash_unjournaled_bytes_are_cut_and_replayed_lines_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("production.db");
        let file = dir.path().join("out/formation.txt");
        {
            let ctx = TestContext::new().with_embedded_db(&db).unwrap();
            let mut op = ctx
                .operation::<FileOperation>(settings(dir.path()))
                .await
                .unwrap();
            op.send(&request(1, "a", "s")).await.unwrap();
            op.send(&request(2, "b", "s")).await.unwrap();
            // The journal is written in queue order: a later write is a barrier.
            let db = ctx.embedded_db().unwrap();
            db.write(|_| Ok(())).await.unwrap();
        }
        // A crash after a write but before its journal entry committed.
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(b"3 : s : half-done\n").unwrap();
        drop(f);

        // Restarted: the uncommitted line is cut; sessions 1 and 2 (ids 1, 2) are
        // re-delivered and already journaled, session 3 is new.
        let ctx = TestContext::new()
            .with_embedded_db(&db)
            .unwrap()
            .replaying();
        let mut op = ctx
            .operation::<FileOperation>(settings(dir.path()))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "1 : s : a\n2 : s : b\n"
        );
        assert!(ctx.events().iter().any(|(_, t)| t.contains("cut 18 bytes")));
        op.send(&request(1, "a", "s")).await.unwrap();
        op.send(&request(2, "b", "s")).await.unwrap();
        op.send(&request(3, "c", "s")).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "1 : s : a\n2 : s : b\n3 : s : c\n"
        );
    }

    #[actix_rt::test]
    async fn the_journal_keeps_only_what_a_re_delivery_could_need() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("production.db");
        let ctx = TestContext::new().with_embedded_db(&db_path).unwrap();
        {
            let mut op = ctx
                .operation::<FileOperation>(settings(dir.path()))
                .await
                .unwrap();
            for i in 1..=3 {
                op.send(&request(i, "n", "s")).await.unwrap();
            }
        }
        let db = ctx.embedded_db().unwrap();
        let rows = || {
            db.read_blocking(|c| file_journal::table.count().get_result::<i64>(c))
                .unwrap()
        };
        db.write(|_| Ok(())).await.unwrap();
        assert_eq!(rows(), 3);
        // Session 2 is still unfinished in the store (its first request queued): a restart
        // keeps the journal from session 2 on, which its re-delivery may need.
        use interop::store::MessageStore;
        let store = interop::store::SqliteStore::new(db.clone(), true).unwrap();
        store
            .insert(interop::store::MessageRow {
                id: 2,
                session_id: 2,
                parent_id: None,
                source: "ServiceCSV".into(),
                target: "Router".into(),
                type_name: "FormationRequest".into(),
                kind: "request".into(),
                status: "queued".into(),
                is_error: false,
                error_text: None,
                created: interop::store::now(),
                processed: None,
                body: "{}".into(),
                session_key: None,
            })
            .await
            .unwrap();
        let _op = ctx
            .operation::<FileOperation>(settings(dir.path()))
            .await
            .unwrap();
        assert_eq!(rows(), 2);
        let text = std::fs::read_to_string(dir.path().join("out/formation.txt")).unwrap();
        assert_eq!(text.lines().count(), 3);
    }
}

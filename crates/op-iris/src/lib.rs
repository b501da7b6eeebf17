//! op-iris: the business operation over the production's own embedded database (the
//! analog of IRIS's local tables). It keeps the `training` table of the embedded SQLite:
//! upserts `TrainingIrisRequest`s, and answers the list / get / update / delete requests
//! the REST service sends through the production. Writes join the message store's group
//! commit, so a batch of rows costs one commit.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use formation_messages::{
    Training, TrainingDeleteRequest, TrainingGetRequest, TrainingIrisRequest, TrainingIrisResponse,
    TrainingList, TrainingListRequest, TrainingReply, TrainingUpdateRequest,
};
use interop::prelude::*;
use interop::EmbeddedDb;

diesel::table! {
    training (id) {
        id -> BigInt,
        name -> Text,
        room -> Text,
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = training)]
struct Row {
    id: i64,
    name: String,
    room: String,
}

impl From<Row> for Training {
    fn from(r: Row) -> Self {
        Training {
            id: r.id,
            name: r.name,
            room: r.room,
        }
    }
}

impl From<&Training> for Row {
    fn from(t: &Training) -> Self {
        Row {
            id: t.id,
            name: t.name.clone(),
            room: t.room.clone(),
        }
    }
}

/// Settings of `op-iris`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Share of ids (0.0 to 1.0) whose reply carries `flag = true`, which the router's
    /// `when_flagged` rule follows. Deterministic per id, so runs are repeatable.
    #[serde(default)]
    pub flag_ratio: f64,
}

request_set! {
    /// What `op-iris` accepts.
    pub enum IrisRequest {
        Upsert(TrainingIrisRequest),
        List(TrainingListRequest),
        Get(TrainingGetRequest),
        Update(TrainingUpdateRequest),
        Delete(TrainingDeleteRequest),
    }
}

/// The embedded-database operation.
pub struct IrisOperation {
    flag_ratio: f64,
    db: EmbeddedDb,
}

/// Whether `id` is flagged at `ratio`: a fixed hash of the id, so the same id always
/// gets the same answer.
pub fn flag_for(id: i64, ratio: f64) -> bool {
    let mut x = id as u64;
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x % 10_000) < (ratio * 10_000.0).round() as u64
}

/// One write of a batch, done inside the writer's transaction.
enum Write {
    Upsert(Training),
    Update(Training),
    Delete(i64),
}

fn apply(conn: &mut SqliteConnection, write: &Write) -> QueryResult<Option<Training>> {
    match write {
        Write::Upsert(t) => {
            // REPLACE, not diesel's ON CONFLICT builder: diesel re-prepares that one (and
            // plain sql_query) on every call, which cost more than running it. With no
            // foreign keys or triggers on `training`, both leave the same row.
            diesel::replace_into(training::table)
                .values(Row::from(t))
                .execute(conn)?;
            Ok(Some(t.clone()))
        }
        Write::Update(t) => {
            let n = diesel::update(training::table.find(t.id))
                .set(Row::from(t))
                .execute(conn)?;
            Ok((n > 0).then(|| t.clone()))
        }
        Write::Delete(id) => {
            let old: Option<Row> = training::table
                .find(id)
                .select(Row::as_select())
                .first(conn)
                .optional()?;
            diesel::delete(training::table.find(id)).execute(conn)?;
            Ok(old.map(Training::from))
        }
    }
}

impl IrisOperation {
    fn reply_for(&self, write: &Write, result: Option<Training>) -> HostResult<AnyMessage> {
        match write {
            Write::Upsert(t) => AnyMessage::new(&TrainingIrisResponse {
                ok: true,
                flag: flag_for(t.id, self.flag_ratio),
            }),
            Write::Update(_) | Write::Delete(_) => AnyMessage::new(&TrainingReply {
                found: result.is_some(),
                training: result,
            }),
        }
    }

    /// Run consecutive writes as one job of the store's writer: one commit for all.
    async fn write_all(&self, writes: Vec<Write>) -> Vec<HostResult<AnyMessage>> {
        let count = writes.len();
        let done = self
            .db
            // No savepoint: each upsert stands alone (a failed statement undoes itself).
            .write_in_batch(move |conn| {
                let results: Vec<Result<Option<Training>, String>> = writes
                    .iter()
                    .map(|w| apply(conn, w).map_err(|e| e.to_string()))
                    .collect();
                Ok((writes, results))
            })
            .await;
        match done {
            Ok((writes, results)) => writes
                .iter()
                .zip(results)
                .map(|(w, r)| match r {
                    Ok(found) => self.reply_for(w, found),
                    Err(e) => Err(HostError::new(format!("embedded database: {e}"))),
                })
                .collect(),
            Err(e) => vec![Err(HostError::new(e.to_string())); count],
        }
    }

    async fn read(&self, request: &IrisRequest) -> HostResult<AnyMessage> {
        match request {
            IrisRequest::List(r) => {
                let (limit, offset) = (r.limit.clamp(1, 1000), r.offset.max(0));
                let (rows, total) = self
                    .db
                    .read(move |c| {
                        let rows: Vec<Row> = training::table
                            .order(training::id)
                            .limit(limit)
                            .offset(offset)
                            .select(Row::as_select())
                            .load(c)?;
                        let total: i64 = training::table.count().get_result(c)?;
                        Ok((rows, total))
                    })
                    .await?;
                AnyMessage::new(&TrainingList {
                    trainings: rows.into_iter().map(Training::from).collect(),
                    total,
                })
            }
            IrisRequest::Get(r) => {
                let id = r.id;
                let row = self
                    .db
                    .read(move |c| {
                        training::table
                            .find(id)
                            .select(Row::as_select())
                            .first(c)
                            .optional()
                    })
                    .await?;
                let training = row.map(Training::from);
                AnyMessage::new(&TrainingReply {
                    found: training.is_some(),
                    training,
                })
            }
            _ => Err(HostError::new("not a read request")),
        }
    }
}

impl BusinessOperation for IrisOperation {
    const CLASS: &'static str = "op-iris";
    type Settings = Settings;
    type Request = IrisRequest;

    fn new(settings: Settings, ctx: &HostContext) -> HostResult<Self> {
        if !(0.0..=1.0).contains(&settings.flag_ratio) {
            return Err(HostError::new(format!(
                "setting 'flag_ratio': {} is not between 0.0 and 1.0",
                settings.flag_ratio
            )));
        }
        Ok(Self {
            flag_ratio: settings.flag_ratio,
            db: ctx.embedded_db()?,
        })
    }

    async fn on_message(
        &mut self,
        ctx: &MessageContext,
        request: IrisRequest,
    ) -> HostResult<AnyMessage> {
        let mut replies = self.on_batch(vec![(ctx.clone(), request)]).await;
        replies
            .pop()
            .unwrap_or_else(|| Err(HostError::new("no reply")))
    }

    /// Consecutive writes go to the database as one job; a read waits for the writes
    /// before it, so every request sees the ones queued ahead of it.
    async fn on_batch(
        &mut self,
        batch: Vec<(MessageContext, IrisRequest)>,
    ) -> Vec<HostResult<AnyMessage>> {
        let mut replies = Vec::with_capacity(batch.len());
        let mut writes = Vec::new();
        for (_, request) in batch {
            let write = match &request {
                IrisRequest::Upsert(r) => Some(Write::Upsert(r.training.clone())),
                IrisRequest::Update(r) => Some(Write::Update(r.training.clone())),
                IrisRequest::Delete(r) => Some(Write::Delete(r.id)),
                IrisRequest::List(_) | IrisRequest::Get(_) => None,
            };
            match write {
                Some(w) => writes.push(w),
                None => {
                    if !writes.is_empty() {
                        replies.extend(self.write_all(std::mem::take(&mut writes)).await);
                    }
                    replies.push(self.read(&request).await);
                }
            }
        }
        if !writes.is_empty() {
            replies.extend(self.write_all(writes).await);
        }
        replies
    }
}

/// Register `op-iris` and the messages it uses.
pub fn register(registry: &mut Registry) {
    formation_messages::register(registry);
    registry.operation::<IrisOperation>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use interop::testing::{settings_from_toml, TestContext};

    fn training(id: i64, name: &str) -> Training {
        Training {
            id,
            name: name.into(),
            room: format!("room{id}"),
        }
    }

    async fn op(
        dir: &std::path::Path,
        ratio: f64,
    ) -> interop::testing::TestOperation<IrisOperation> {
        TestContext::new()
            .with_embedded_db(&dir.join("production.db"))
            .unwrap()
            .operation::<IrisOperation>(Settings { flag_ratio: ratio })
            .await
            .unwrap()
    }

    fn count(dir: &std::path::Path) -> i64 {
        let db = EmbeddedDb::open(&dir.join("production.db")).unwrap();
        db.read_blocking(|c| training::table.count().get_result(c))
            .unwrap()
    }

    #[actix_rt::test]
    async fn the_same_row_delivered_twice_leaves_one_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut op = op(dir.path(), 0.0).await;
        for name in ["first", "second"] {
            let reply = op
                .send(&TrainingIrisRequest {
                    training: training(5, name),
                })
                .await
                .unwrap();
            assert!(reply.decode::<TrainingIrisResponse>().unwrap().ok);
        }
        assert_eq!(count(dir.path()), 1);
        let got = op.send(&TrainingGetRequest { id: 5 }).await.unwrap();
        let got = got.decode::<TrainingReply>().unwrap();
        assert_eq!(got.training.unwrap().name, "second");
    }

    #[actix_rt::test]
    async fn crud_requests_answer_from_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut op = op(dir.path(), 0.0).await;
        let batch: Vec<_> = (1..=5)
            .map(|i| TrainingIrisRequest {
                training: training(i, "t"),
            })
            .collect();
        assert!(op.send_batch(&batch).await.iter().all(|r| r.is_ok()));

        let list = op
            .send(&TrainingListRequest {
                limit: 2,
                offset: 1,
            })
            .await
            .unwrap()
            .decode::<TrainingList>()
            .unwrap();
        assert_eq!(list.total, 5);
        assert_eq!(
            list.trainings.iter().map(|t| t.id).collect::<Vec<_>>(),
            [2, 3]
        );

        let updated = op
            .send(&TrainingUpdateRequest {
                training: training(2, "renamed"),
            })
            .await
            .unwrap()
            .decode::<TrainingReply>()
            .unwrap();
        assert!(updated.found);
        let missing = op
            .send(&TrainingUpdateRequest {
                training: training(99, "x"),
            })
            .await
            .unwrap()
            .decode::<TrainingReply>()
            .unwrap();
        assert!(!missing.found, "update of an unknown id must not create it");

        let deleted = op
            .send(&TrainingDeleteRequest { id: 2 })
            .await
            .unwrap()
            .decode::<TrainingReply>()
            .unwrap();
        assert_eq!(deleted.training.unwrap().name, "renamed");
        let gone = op
            .send(&TrainingGetRequest { id: 2 })
            .await
            .unwrap()
            .decode::<TrainingReply>()
            .unwrap();
        assert!(!gone.found);
        assert_eq!(count(dir.path()), 4);
    }

    #[actix_rt::test]
    async fn the_flag_follows_the_ratio_and_is_repeatable() {
        let dir = tempfile::tempdir().unwrap();
        let mut all = op(dir.path(), 1.0).await;
        let r = all
            .send(&TrainingIrisRequest {
                training: training(1, "x"),
            })
            .await
            .unwrap()
            .decode::<TrainingIrisResponse>()
            .unwrap();
        assert!(r.flag);
        let flagged = (0..10_000).filter(|id| flag_for(*id, 0.25)).count();
        assert!((2_300..2_700).contains(&flagged), "{flagged}");
        assert_eq!(flag_for(42, 0.5), flag_for(42, 0.5));
        assert!(!(0..1000).any(|id| flag_for(id, 0.0)));
    }

    #[actix_rt::test]
    async fn flag_ratio_out_of_range_is_refused() {
        let s: Settings = settings_from_toml("flag_ratio = 1.5").unwrap();
        let err = match TestContext::new().operation::<IrisOperation>(s).await {
            Err(e) => e,
            Ok(_) => panic!("1.5 accepted"),
        };
        assert!(err.message.contains("flag_ratio"), "{err}");
    }
}

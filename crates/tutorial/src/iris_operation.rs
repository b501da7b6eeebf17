//! Chapter 3: the smallest `IrisOperation`, a business operation over the production's
//! embedded database (IRIS's local tables): it keeps the `training` table and replies
//! `TrainingIrisResponse`, whose `flag` the router's exercise follows.

// ANCHOR: table
use diesel::prelude::*;
use formation_messages::{TrainingIrisRequest, TrainingIrisResponse};
use interop::prelude::*;
use interop::EmbeddedDb;

// The `training` table of the embedded database (created by `migrations/sqlite`).
diesel::table! {
    training (id) {
        id -> BigInt,
        name -> Text,
        room -> Text,
    }
}

#[derive(Insertable)]
#[diesel(table_name = training)]
struct Row {
    id: i64,
    name: String,
    room: String,
}
// ANCHOR_END: table

// ANCHOR: host
/// Settings of `tutorial-iris`: none, but unknown keys are still refused.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {}

request_set! {
    /// What `tutorial-iris` accepts.
    pub enum IrisRequest { Training(TrainingIrisRequest) }
}

/// The embedded-database operation.
pub struct IrisOperation {
    db: EmbeddedDb,
}

impl BusinessOperation for IrisOperation {
    const CLASS: &'static str = "tutorial-iris";
    type Settings = Settings;
    type Request = IrisRequest;

    fn new(_settings: Settings, ctx: &HostContext) -> HostResult<Self> {
        Ok(Self {
            db: ctx.embedded_db()?,
        })
    }

    async fn on_message(
        &mut self,
        _ctx: &MessageContext,
        request: IrisRequest,
    ) -> HostResult<AnyMessage> {
        let IrisRequest::Training(TrainingIrisRequest { training: t }) = request;
        let id = t.id;
        let row = Row {
            id: t.id,
            name: t.name,
            room: t.room,
        };
        // Runs in the store writer's next group commit; resolves once committed.
        self.db
            .write(move |conn| {
                diesel::replace_into(training::table)
                    .values(&row)
                    .execute(conn)
            })
            .await?;
        // The Python original flips a coin; an even id keeps runs repeatable.
        AnyMessage::new(&TrainingIrisResponse {
            ok: true,
            flag: id % 2 == 0,
        })
    }
}
// ANCHOR_END: host

#[cfg(test)]
mod tests {
    use super::*;
    use formation_messages::Training;
    use interop::testing::TestContext;

    fn request(id: i64, name: &str) -> TrainingIrisRequest {
        TrainingIrisRequest {
            training: Training {
                id,
                name: name.into(),
                room: format!("room{id}"),
            },
        }
    }

    // ANCHOR: test
    #[actix_rt::test]
    async fn rows_land_in_the_training_table_and_even_ids_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = TestContext::new()
            .with_embedded_db(&dir.path().join("production.db"))
            .unwrap();
        let mut op = ctx.operation::<IrisOperation>(Settings {}).await.unwrap();

        for (id, flagged) in [(3, false), (4, true)] {
            let reply = op.send(&request(id, "formation")).await.unwrap();
            let reply = reply.decode::<TrainingIrisResponse>().unwrap();
            assert_eq!((reply.ok, reply.flag), (true, flagged));
        }
        op.send(&request(4, "renamed")).await.unwrap();

        let db = ctx.embedded_db().unwrap();
        let names: Vec<String> = db
            .read(|c| {
                training::table
                    .order(training::id)
                    .select(training::name)
                    .load(c)
            })
            .await
            .unwrap();
        assert_eq!(names, ["formation", "renamed"]);
    }
    // ANCHOR_END: test

    #[actix_rt::test]
    async fn without_an_embedded_database_it_does_not_start() {
        let err = match TestContext::new()
            .operation::<IrisOperation>(Settings {})
            .await
        {
            Err(e) => e,
            Ok(_) => panic!("no embedded database must fail"),
        };
        assert!(err.message.contains("no embedded database"), "{err}");
    }
}

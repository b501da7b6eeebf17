//! Chapter 4: the smallest `Router`, a business process that sends each
//! `FormationRequest` to the file operation, then to the embedded-database operation,
//! then, per its rule, to the PostgreSQL operation, all with `send_request_sync`.

// ANCHOR: settings
use formation_messages::{
    FormationRequest, FormationResponse, Training, TrainingIrisRequest, TrainingIrisResponse,
};
use interop::prelude::*;

/// When a formation also goes to PostgreSQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostgresRule {
    /// Every formation.
    #[default]
    Always,
    /// None.
    Never,
    /// Those the embedded database flags (the exercise).
    WhenFlagged,
}

/// Settings of `tutorial-router`: the items it sends to, and the rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Item that writes the text file.
    #[serde(default = "default_file_target")]
    pub file_target: String,
    /// Item that keeps the embedded database's `training` table.
    #[serde(default = "default_iris_target")]
    pub iris_target: String,
    /// Item that writes PostgreSQL.
    #[serde(default = "default_postgres_target")]
    pub postgres_target: String,
    /// `always`, `never` or `when_flagged`.
    #[serde(default)]
    pub postgres_rule: PostgresRule,
}

fn default_file_target() -> String {
    "FileOperation".into()
}
fn default_iris_target() -> String {
    "IrisOperation".into()
}
fn default_postgres_target() -> String {
    "PostgresOperation".into()
}
// ANCHOR_END: settings

// ANCHOR: host
request_set! {
    /// What `tutorial-router` accepts.
    pub enum RouterRequest { Formation(FormationRequest) }
}

/// The router process.
pub struct Router {
    settings: Settings,
}

impl BusinessProcess for Router {
    const CLASS: &'static str = "tutorial-router";
    type Settings = Settings;
    type Request = RouterRequest;

    fn targets() -> Vec<Target> {
        vec![
            Target::sends::<FormationRequest>("file_target"),
            Target::sends::<TrainingIrisRequest>("iris_target"),
            Target::sends::<FormationRequest>("postgres_target"),
        ]
    }

    fn new(settings: Settings, _ctx: &HostContext) -> HostResult<Self> {
        Ok(Self { settings })
    }

    async fn on_request(
        &self,
        ctx: &ProcessContext,
        request: RouterRequest,
    ) -> HostResult<Option<AnyMessage>> {
        let RouterRequest::Formation(request) = request;
        let s = &self.settings;
        let f = &request.formation;

        ctx.send_request_sync(&s.file_target, &request).await?;

        let training = TrainingIrisRequest {
            training: Training {
                id: f.id,
                name: f.nom.clone(),
                room: f.salle.clone(),
            },
        };
        let reply: TrainingIrisResponse = ctx
            .send_request_sync(&s.iris_target, &training)
            .await?
            .decode()?;
        let mut stored_in = vec![s.file_target.clone(), s.iris_target.clone()];

        // ANCHOR: exercise
        if s.postgres_rule.sends(reply.flag) {
            ctx.send_request_sync(&s.postgres_target, &request).await?;
            stored_in.push(s.postgres_target.clone());
        } else {
            ctx.trace(&format!("formation {}: not sent to PostgreSQL", f.id));
        }
        // ANCHOR_END: exercise

        let response = FormationResponse {
            id: f.id,
            stored_in,
            skipped: Vec::new(),
        };
        Ok(Some(AnyMessage::new(&response)?))
    }
}
// ANCHOR_END: host

// ANCHOR: rule
impl PostgresRule {
    /// Whether a formation goes to PostgreSQL, given the embedded database's `flag`.
    pub fn sends(self, flag: bool) -> bool {
        match self {
            PostgresRule::Always => true,
            PostgresRule::Never => false,
            PostgresRule::WhenFlagged => flag,
        }
    }
}
// ANCHOR_END: rule

#[cfg(test)]
mod tests {
    use super::*;
    use formation_messages::{Formation, FormationStored};
    use interop::testing::{settings_from_toml, TestContext};

    fn request(id: i64) -> FormationRequest {
        FormationRequest {
            formation: Formation {
                id,
                nom: format!("formation{id}"),
                salle: format!("salle{id}"),
            },
        }
    }

    // ANCHOR: stubs
    /// The router's three targets, stubbed; the embedded database answers `flag`.
    fn stubbed_targets(flag: bool) -> TestContext {
        let stored = |r: FormationRequest| FormationStored {
            id: r.formation.id,
            location: "stub".into(),
        };
        TestContext::new()
            .reply_from("FileOperation", stored)
            .reply_from("IrisOperation", move |_: TrainingIrisRequest| {
                TrainingIrisResponse { ok: true, flag }
            })
            .reply_from("PostgresOperation", stored)
    }
    // ANCHOR_END: stubs

    #[actix_rt::test]
    async fn a_formation_goes_to_the_file_then_the_embedded_db_then_postgres() {
        let ctx = stubbed_targets(false);
        let settings = settings_from_toml("postgres_rule = \"always\"").unwrap();
        let router = ctx.process::<Router>(settings).await.unwrap();
        let reply = router.send(&request(3)).await.unwrap();
        let reply = reply.decode::<FormationResponse>().unwrap();
        assert_eq!(
            reply.stored_in,
            ["FileOperation", "IrisOperation", "PostgresOperation"]
        );
        let iris = ctx.sent_to::<TrainingIrisRequest>("IrisOperation");
        assert_eq!(iris[0].training.name, "formation3");
        assert_eq!(iris[0].training.room, "salle3");
    }

    // ANCHOR: test_when_flagged
    #[actix_rt::test]
    async fn when_flagged_sends_to_postgres_only_what_the_embedded_db_flags() {
        for flag in [true, false] {
            let ctx = stubbed_targets(flag);
            let settings = settings_from_toml("postgres_rule = \"when_flagged\"").unwrap();
            let router = ctx.process::<Router>(settings).await.unwrap();

            router.send(&request(1)).await.unwrap();

            let to_postgres = ctx.sent_to::<FormationRequest>("PostgresOperation");
            assert_eq!(to_postgres.len(), usize::from(flag), "flag {flag}");
        }
    }
    // ANCHOR_END: test_when_flagged

    #[actix_rt::test]
    async fn an_operation_error_is_the_routers_error() {
        let ctx = stubbed_targets(true).fail_from("PostgresOperation", "connection refused");
        let router = ctx
            .process::<Router>(settings_from_toml("").unwrap())
            .await
            .unwrap();
        let err = router.send(&request(6)).await.unwrap_err();
        assert!(err.message.contains("PostgresOperation"), "{err}");
        assert!(err.message.contains("connection refused"), "{err}");
    }

    #[test]
    fn an_unknown_rule_is_refused_naming_the_value() {
        let err = settings_from_toml::<Settings>("postgres_rule = \"sometimes\"").unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
    }
}

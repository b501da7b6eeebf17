//! proc-router: the formation production's business process. For each
//! `FormationRequest` it calls the file operation, then the embedded-database operation
//! (as a `TrainingIrisRequest`), then, per its PostgreSQL rule, the PostgreSQL operation;
//! all as sync requests, so the trace shows each hop and its reply. A disabled target is
//! skipped with a trace entry; an operation's error becomes the router's error reply.

use formation_messages::{
    FormationRequest, FormationResponse, Training, TrainingIrisRequest, TrainingIrisResponse,
};
use interop::prelude::*;

/// When the router also sends a row to PostgreSQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostgresRule {
    /// Every row.
    #[default]
    Always,
    /// No row.
    Never,
    /// Rows whose embedded-database reply has `flag` set (the tutorial's exercise).
    WhenFlagged,
}

/// Settings of `proc-router`.
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

request_set! {
    /// What `proc-router` accepts.
    pub enum RouterRequest { Formation(FormationRequest) }
}

/// The router process.
pub struct Router {
    settings: Settings,
}

/// Outcome of one hop.
enum Hop {
    Stored(AnyMessage),
    Skipped,
}

impl Router {
    /// Send to `target`, or skip it with a trace entry when it is disabled.
    async fn hop<M: Message>(
        &self,
        ctx: &ProcessContext,
        target: &str,
        message: &M,
    ) -> Result<Hop, SendError> {
        if target.is_empty() {
            return Ok(Hop::Skipped);
        }
        if ctx.host().item_enabled(target) == Some(false) {
            ctx.trace(&format!("{target} is disabled: skipped"));
            return Ok(Hop::Skipped);
        }
        match ctx.send_request_sync(target, message).await {
            Ok(reply) => Ok(Hop::Stored(reply)),
            // Disabled between the check and the send.
            Err(SendError::TargetDisabled(_)) => {
                ctx.trace(&format!("{target} is disabled: skipped"));
                Ok(Hop::Skipped)
            }
            Err(e) => Err(e),
        }
    }
}

impl BusinessProcess for Router {
    const CLASS: &'static str = "proc-router";
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
        let mut response = FormationResponse {
            id: f.id,
            ..Default::default()
        };
        let mut errors = Vec::new();
        let mut note = |target: &str,
                        hop: Result<Hop, SendError>,
                        response: &mut FormationResponse| match hop {
            Ok(Hop::Stored(reply)) => {
                response.stored_in.push(target.to_string());
                Some(reply)
            }
            // An empty target setting means "no such sink": nothing to report.
            Ok(Hop::Skipped) if target.is_empty() => None,
            Ok(Hop::Skipped) => {
                response.skipped.push(target.to_string());
                None
            }
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };

        let file = self.hop(ctx, &s.file_target, &request).await;
        note(&s.file_target, file, &mut response);

        let iris_request = TrainingIrisRequest {
            training: Training {
                id: f.id,
                name: f.nom.clone(),
                room: f.salle.clone(),
            },
        };
        let iris = self.hop(ctx, &s.iris_target, &iris_request).await;
        let flag = match note(&s.iris_target, iris, &mut response) {
            Some(reply) => reply.decode::<TrainingIrisResponse>()?.flag,
            None => false,
        };

        let to_postgres = match s.postgres_rule {
            PostgresRule::Always => true,
            PostgresRule::Never => false,
            PostgresRule::WhenFlagged => flag,
        };
        if to_postgres {
            let pg = self.hop(ctx, &s.postgres_target, &request).await;
            note(&s.postgres_target, pg, &mut response);
        } else {
            if !s.postgres_target.is_empty() {
                response.skipped.push(s.postgres_target.clone());
            }
        }

        if !errors.is_empty() {
            return Err(HostError::new(format!(
                "formation {}: {}",
                f.id,
                errors.join("; ")
            )));
        }
        Ok(Some(AnyMessage::new(&response)?))
    }
}

/// Register `proc-router` and the messages it uses.
pub fn register(registry: &mut Registry) {
    formation_messages::register(registry);
    registry.process::<Router>();
}

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

    fn sinks(flag: bool) -> TestContext {
        TestContext::new()
            .reply_from("FileOperation", |r: FormationRequest| FormationStored {
                id: r.formation.id,
                location: "file".into(),
            })
            .reply_from("IrisOperation", move |_: TrainingIrisRequest| {
                TrainingIrisResponse { ok: true, flag }
            })
            .reply_from("PostgresOperation", |r: FormationRequest| FormationStored {
                id: r.formation.id,
                location: "pg".into(),
            })
    }

    fn settings(rule: &str) -> Settings {
        settings_from_toml(&format!("postgres_rule = \"{rule}\"")).unwrap()
    }

    #[actix_rt::test]
    async fn a_row_goes_to_file_then_embedded_db_then_postgres() {
        let ctx = sinks(false);
        let router = ctx.process::<Router>(settings("always")).await.unwrap();
        let reply = router.send(&request(3)).await.unwrap();
        let reply = reply.decode::<FormationResponse>().unwrap();
        assert_eq!(
            reply.stored_in,
            ["FileOperation", "IrisOperation", "PostgresOperation"]
        );
        let targets: Vec<String> = ctx.sent().into_iter().map(|s| s.target).collect();
        assert_eq!(
            targets,
            ["FileOperation", "IrisOperation", "PostgresOperation"]
        );
        let iris = ctx.sent_to::<TrainingIrisRequest>("IrisOperation");
        assert_eq!(
            iris[0].training,
            Training {
                id: 3,
                name: "formation3".into(),
                room: "salle3".into()
            }
        );
    }

    #[actix_rt::test]
    async fn when_flagged_follows_the_embedded_db_reply() {
        for (flag, expect_pg) in [(true, 1), (false, 0)] {
            let ctx = sinks(flag);
            let router = ctx
                .process::<Router>(settings("when_flagged"))
                .await
                .unwrap();
            router.send(&request(1)).await.unwrap();
            assert_eq!(
                ctx.sent_to::<FormationRequest>("PostgresOperation").len(),
                expect_pg,
                "flag {flag}"
            );
        }
        let ctx = sinks(true);
        let router = ctx.process::<Router>(settings("never")).await.unwrap();
        let reply = router.send(&request(1)).await.unwrap();
        assert!(ctx
            .sent_to::<FormationRequest>("PostgresOperation")
            .is_empty());
        let reply = reply.decode::<FormationResponse>().unwrap();
        assert_eq!(reply.skipped, ["PostgresOperation"]);
    }

    #[actix_rt::test]
    async fn a_disabled_target_is_skipped_with_a_trace_entry() {
        let ctx = sinks(false).disabled("PostgresOperation");
        let router = ctx.process::<Router>(settings("always")).await.unwrap();
        let reply = router
            .send(&request(4))
            .await
            .unwrap()
            .decode::<FormationResponse>()
            .unwrap();
        assert_eq!(reply.skipped, ["PostgresOperation"]);
        assert!(ctx
            .events()
            .iter()
            .any(|(level, text)| *level == interop::Level::Trace
                && text.contains("PostgresOperation is disabled")));
    }

    #[actix_rt::test]
    async fn an_operation_error_is_the_routers_error_with_its_cause() {
        let ctx = sinks(false).fail_from("PostgresOperation", "connect to 127.0.0.1:5432 refused");
        let router = ctx.process::<Router>(settings("always")).await.unwrap();
        let err = router.send(&request(6)).await.unwrap_err();
        assert!(err.message.contains("PostgresOperation"), "{err}");
        assert!(err.message.contains("127.0.0.1:5432 refused"), "{err}");
        // The other sinks were still called.
        assert_eq!(ctx.sent_to::<FormationRequest>("FileOperation").len(), 1);
    }

    #[test]
    fn unknown_rule_is_refused_naming_the_value() {
        let err = settings_from_toml::<Settings>("postgres_rule = \"sometimes\"").unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
    }

    #[actix_rt::test]
    async fn an_empty_target_is_no_sink() {
        let ctx = sinks(false);
        let s: Settings =
            settings_from_toml("postgres_target = \"\"\npostgres_rule = \"always\"").unwrap();
        let router = ctx.process::<Router>(s).await.unwrap();
        let reply = router
            .send(&request(8))
            .await
            .unwrap()
            .decode::<FormationResponse>()
            .unwrap();
        assert_eq!(reply.stored_in, ["FileOperation", "IrisOperation"]);
        assert!(reply.skipped.is_empty(), "{:?}", reply.skipped);
    }
}

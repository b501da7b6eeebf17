//! Chapter 4: the router again, with `send_request_async`: the file and the
//! embedded-database requests leave together, and `on_response` takes each reply as it
//! comes, sending to PostgreSQL when the rule says so.

// ANCHOR: host
use formation_messages::{
    Formation, FormationRequest, Training, TrainingIrisRequest, TrainingIrisResponse,
};
use interop::prelude::*;

use crate::router::{RouterRequest, Settings};

/// The router, with async requests.
pub struct AsyncRouter {
    settings: Settings,
}

impl BusinessProcess for AsyncRouter {
    const CLASS: &'static str = "tutorial-async-router";
    type Settings = Settings;
    type Request = RouterRequest;

    fn targets() -> Vec<Target> {
        <crate::router::Router as BusinessProcess>::targets()
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
        let f = &request.formation;
        let training = TrainingIrisRequest {
            training: Training {
                id: f.id,
                name: f.nom.clone(),
                room: f.salle.clone(),
            },
        };
        ctx.send_request_async(&self.settings.file_target, &request, "file")?;
        ctx.send_request_async(&self.settings.iris_target, &training, "iris")?;
        // No reply yet: it comes once every async request is answered.
        Ok(None)
    }

    async fn on_response(
        &self,
        ctx: &ProcessContext,
        reply: AsyncReply,
    ) -> HostResult<Option<AnyMessage>> {
        // An error reply from a target is this process's error.
        let answer = reply.result?;
        ctx.trace(&format!("{} answered {}", reply.target, answer.type_name()));
        if reply.completion_key == "iris" {
            let flag = answer.decode::<TrainingIrisResponse>()?.flag;
            if self.settings.postgres_rule.sends(flag) {
                // `reply.request` is what was sent: rebuild the formation from it.
                let Training { id, name, room } =
                    reply.request.decode::<TrainingIrisRequest>()?.training;
                let formation = Formation {
                    id,
                    nom: name,
                    salle: room,
                };
                let request = FormationRequest { formation };
                ctx.send_request_async(&self.settings.postgres_target, &request, "postgres")?;
            }
        }
        // `None`: the process replies `Ack` once the last reply is in.
        Ok(None)
    }
}
// ANCHOR_END: host

#[cfg(test)]
mod tests {
    use super::*;
    use formation_messages::FormationStored;
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

    // ANCHOR: test
    #[actix_rt::test]
    async fn a_flagged_formation_reaches_postgres_after_the_embedded_db_reply() {
        let ctx = stubbed_targets(true);
        let settings = settings_from_toml("postgres_rule = \"when_flagged\"").unwrap();
        let router = ctx.process::<AsyncRouter>(settings).await.unwrap();

        let reply = router.send(&request(4)).await.unwrap();

        assert!(reply.is::<Ack>());
        let targets: Vec<String> = ctx.sent().into_iter().map(|s| s.target).collect();
        assert_eq!(
            targets,
            ["FileOperation", "IrisOperation", "PostgresOperation"]
        );
        let to_postgres = ctx.sent_to::<FormationRequest>("PostgresOperation");
        assert_eq!(to_postgres, [request(4)]);
    }
    // ANCHOR_END: test

    #[actix_rt::test]
    async fn an_unflagged_formation_stays_out_of_postgres() {
        let ctx = stubbed_targets(false);
        let settings = settings_from_toml("postgres_rule = \"when_flagged\"").unwrap();
        let router = ctx.process::<AsyncRouter>(settings).await.unwrap();
        router.send(&request(3)).await.unwrap();
        assert!(ctx
            .sent_to::<FormationRequest>("PostgresOperation")
            .is_empty());
        let traces = ctx.events();
        assert_eq!(traces.len(), 2, "{traces:?}");
    }

    #[actix_rt::test]
    async fn an_error_reply_is_the_process_error() {
        let ctx = stubbed_targets(false).fail_from("FileOperation", "disk full");
        let router = ctx
            .process::<AsyncRouter>(settings_from_toml("").unwrap())
            .await
            .unwrap();
        let err = router.send(&request(5)).await.unwrap_err();
        assert!(err.message.contains("disk full"), "{err}");
    }
}

//! svc-rest: the composite application's REST business service (the tutorial's
//! `/training/` API). It has no inbound adapter of its own: its routes live on the
//! production's HTTP server, and each call enters the production as a new session sent
//! from this item, as an IRIS REST dispatch class calling `Ens.Director` would.
//! `POST /training/` sends a `FormationRequest` to `target` (the router); list, get,
//! update and delete go to `iris_target` (the embedded-database operation). Input is
//! checked in full first, so a refused call leaves nothing behind; disabling the item
//! makes the routes answer 503.

mod input;
mod routes;

use formation_messages::{
    FormationRequest, TrainingDeleteRequest, TrainingGetRequest, TrainingListRequest,
    TrainingUpdateRequest,
};
use interop::prelude::*;

pub use input::{RestError, BODY_LIMIT, DEFAULT_LIMIT, MAX_LIMIT};
pub use routes::{openapi, routes};

/// The class name used in config.
pub const CLASS: &str = "svc-rest";

/// Settings of `svc-rest`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Item that `POST /training/` sends its `FormationRequest` to.
    #[serde(default = "default_target")]
    pub target: String,
    /// Item that answers list, get, update and delete (`Training*Request`).
    #[serde(default = "default_iris_target")]
    pub iris_target: String,
    /// Calls into the production in flight at once; beyond it requests are answered
    /// 503 with `Retry-After` instead of queueing without bound.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn default_max_in_flight() -> usize {
    512
}

fn default_target() -> String {
    "Router".into()
}

fn default_iris_target() -> String {
    "IrisOperation".into()
}

/// The REST service. It holds nothing: the HTTP handlers read the running item's
/// settings and send through the production.
pub struct RestService;

impl BusinessService for RestService {
    const CLASS: &'static str = CLASS;
    type Settings = Settings;

    fn targets() -> Vec<Target> {
        vec![
            Target::sends::<FormationRequest>("target"),
            Target::sends::<TrainingListRequest>("iris_target")
                .and::<TrainingGetRequest>()
                .and::<TrainingUpdateRequest>()
                .and::<TrainingDeleteRequest>(),
        ]
    }

    fn new(settings: Settings, _ctx: &HostContext) -> HostResult<Self> {
        for (name, value) in [
            ("target", &settings.target),
            ("iris_target", &settings.iris_target),
        ] {
            if value.trim().is_empty() {
                return Err(HostError::new(format!("setting '{name}' is empty")));
            }
        }
        Ok(RestService)
    }

    async fn on_init(&mut self, ctx: &ServiceContext) -> HostResult<()> {
        ctx.info("serving /training/ on the production's HTTP server");
        Ok(())
    }
}

/// Register `svc-rest`, its routes and the messages it sends.
pub fn register(registry: &mut Registry) {
    formation_messages::register(registry);
    registry.service_with_routes::<RestService>(Some(routes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use interop::testing::{settings_from_toml, TestContext};

    #[test]
    fn settings_default_to_the_formation_items() {
        let s: Settings = settings_from_toml("").unwrap();
        assert_eq!(
            (s.target.as_str(), s.iris_target.as_str()),
            ("Router", "IrisOperation")
        );
        assert!(settings_from_toml::<Settings>("port = 8080").is_err());
    }

    #[actix_rt::test]
    async fn an_empty_target_is_refused_at_start() {
        let settings = Settings {
            target: " ".into(),
            iris_target: "IrisOperation".into(),
            max_in_flight: 512,
        };
        let result = TestContext::new().service::<RestService>(settings).await;
        let error = result.err().expect("an empty target must be refused");
        assert!(error.to_string().contains("'target'"), "{error}");
    }

    #[test]
    fn the_openapi_document_has_the_training_paths() {
        let doc = openapi();
        for path in ["/", "/training/", "/training/{id}"] {
            assert!(doc.paths.paths.contains_key(path), "{path} missing");
        }
    }

    #[test]
    fn registered_with_its_routes_and_targets() {
        let mut registry = Registry::new();
        register(&mut registry);
        let class = registry.class(CLASS).unwrap();
        assert!(class.http.is_some());
        assert_eq!(class.targets.len(), 2);
        assert!(registry.types().contains("TrainingDeleteRequest"));
    }
}

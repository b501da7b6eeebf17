//! The HTTP face of the REST service: `/training/` CRUD, each call one session of the
//! production, and the OpenAPI description of these routes.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use formation_messages::{
    Formation, FormationRequest, FormationResponse, Training, TrainingDeleteRequest,
    TrainingGetRequest, TrainingList, TrainingListRequest, TrainingReply, TrainingUpdateRequest,
};
use futures_util::StreamExt;
use interop::{AnyMessage, Message, Production, SendError, ServiceContext};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::input::{
    check_content_type, parse_formation, parse_page, parse_path_id, FormationInput, RestError,
    BODY_LIMIT,
};
use crate::{Settings, CLASS};

/// How much of an oversized body is still read (and dropped) so the client gets its 413
/// instead of a reset connection; beyond this the connection is cut.
const DRAIN_LIMIT: usize = 16 * BODY_LIMIT;

/// Mount the routes, each with and without its trailing slash.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(version));
    for path in ["/training", "/training/"] {
        cfg.service(
            web::resource(path)
                .route(web::get().to(list))
                .route(web::post().to(create))
                .default_service(web::to(method_not_allowed)),
        );
    }
    for path in ["/training/{id}", "/training/{id}/"] {
        cfg.service(
            web::resource(path)
                .route(web::get().to(get_one))
                .route(web::put().to(update))
                .route(web::delete().to(delete))
                .default_service(web::to(method_not_allowed)),
        );
    }
}

/// The OpenAPI description of the REST service's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    RestApi::openapi()
}

#[derive(OpenApi)]
#[openapi(
    paths(version, create, list, get_one, update, delete),
    components(schemas(
        Version,
        FormationBody,
        FormationUpdateBody,
        TrainingItem,
        TrainingRecord,
        CreatedRecord,
        TrainingPage,
        DeletedRecord,
        ErrorBody
    )),
    tags((name = "training", description = "The REST business service: trainings through the production"))
)]
struct RestApi;

/// `GET /`.
#[derive(Serialize, ToSchema)]
pub struct Version {
    /// Version of interop-rs.
    pub version: String,
}

/// A training to create.
#[derive(Serialize, ToSchema)]
pub struct FormationBody {
    /// 1 to 9223372036854775807.
    pub id: i64,
    /// Name of the training; not empty.
    pub nom: String,
    /// Room; not empty.
    pub salle: String,
}

/// A training's new values; `id`, when given, must be the path's.
#[derive(Serialize, ToSchema)]
pub struct FormationUpdateBody {
    pub id: Option<i64>,
    pub nom: String,
    pub salle: String,
}

/// A stored training.
#[derive(Serialize, ToSchema)]
pub struct TrainingItem {
    pub id: i64,
    pub nom: String,
    pub salle: String,
}

impl From<Training> for TrainingItem {
    fn from(t: Training) -> Self {
        TrainingItem {
            id: t.id,
            nom: t.name,
            salle: t.room,
        }
    }
}

/// A training and the session that read or wrote it.
#[derive(Serialize, ToSchema)]
pub struct TrainingRecord {
    pub id: i64,
    pub nom: String,
    pub salle: String,
    /// The production session of this call: `GET /api/sessions/{session_id}/trace`.
    pub session_id: i64,
}

/// A created training: what was stored, where, and the session.
#[derive(Serialize, ToSchema)]
pub struct CreatedRecord {
    pub id: i64,
    pub nom: String,
    pub salle: String,
    pub session_id: i64,
    /// Sinks that stored it.
    pub stored_in: Vec<String>,
    /// Sinks skipped (disabled, or not asked by the router's rule).
    pub skipped: Vec<String>,
}

/// A page of trainings, ordered by id.
#[derive(Serialize, ToSchema)]
pub struct TrainingPage {
    pub trainings: Vec<TrainingItem>,
    /// Trainings in all.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub session_id: i64,
}

/// A deleted training.
#[derive(Serialize, ToSchema)]
pub struct DeletedRecord {
    pub deleted: TrainingItem,
    pub session_id: i64,
}

/// Every error: `field` names the input at fault (400, 413, 415, 422); `session_id` the
/// production session of a failed call (404, 502, 504).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub field: Option<String>,
    pub session_id: Option<i64>,
}

/// The running REST service item: what its requests are sent as.
struct Rest {
    ctx: ServiceContext,
    settings: Settings,
}

/// Find the running `svc-rest` item, or say why there is none (503).
fn rest_service(production: &Production) -> Result<Rest, RestError> {
    let unavailable = |text: String| RestError::new(StatusCode::SERVICE_UNAVAILABLE, text);
    let Some(item) = production.running_item_of_class(CLASS) else {
        let configured = production
            .items()
            .into_iter()
            .find(|i| i.spec.class.name == CLASS);
        return Err(unavailable(match configured {
            Some(item) if !item.enabled() => {
                format!("the REST service '{}' is disabled", item.name())
            }
            Some(item) => format!(
                "the REST service '{}' is not running ({})",
                item.name(),
                format!("{:?}", item.state().0).to_lowercase()
            ),
            None => format!("this production has no item of class {CLASS}"),
        }));
    };
    let settings: Settings = serde_json::from_value(item.spec.settings.clone()).map_err(|e| {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("item '{}': settings: {e}", item.name()),
        )
    })?;
    let ctx = production
        .service_context(item.name())
        .map_err(|e| unavailable(format!("the REST service: {e}")))?;
    Ok(Rest { ctx, settings })
}

/// Calls into the production in flight from the REST routes.
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One slot of `IN_FLIGHT`, given back on drop.
struct Slot;

impl Slot {
    fn take(max: usize) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        let before = IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        if before >= max {
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Send one request as a new session; a failed call becomes 502/503/504, and a
/// production that already has `max_in_flight` REST calls in progress answers 503.
async fn call<M: Message>(
    rest: &Rest,
    target: &str,
    message: &M,
) -> Result<(i64, AnyMessage), RestError> {
    let Some(_slot) = Slot::take(rest.settings.max_in_flight.max(1)) else {
        return Err(RestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the production is busy ({} REST calls in progress); retry shortly",
                rest.settings.max_in_flight
            ),
        ));
    };
    let reply = rest.ctx.send_request_session(target, message).await;
    match reply.result {
        Ok(m) => Ok((reply.session_id, m)),
        Err(e) => Err(send_error(e, reply.session_id)),
    }
}

fn send_error(error: SendError, session_id: i64) -> RestError {
    let status = match &error {
        SendError::ErrorReply { .. } => StatusCode::BAD_GATEWAY,
        SendError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        SendError::TargetDisabled(_) | SendError::TargetStopped(_) | SendError::ShuttingDown => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        SendError::UnknownTarget(_) => StatusCode::BAD_GATEWAY,
        SendError::Duplicate(_) => StatusCode::CONFLICT,
        SendError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let stored = error.reached_store();
    let e = RestError::new(status, error.to_string());
    if stored && session_id > 0 {
        e.with_session(session_id)
    } else {
        e
    }
}

/// Decode a reply, or 502 naming the target.
fn decode<M: Message>(reply: &AnyMessage, target: &str, session_id: i64) -> Result<M, RestError> {
    reply.decode::<M>().map_err(|e| {
        RestError::new(
            StatusCode::BAD_GATEWAY,
            format!("unexpected reply from '{target}': {e}"),
        )
        .with_session(session_id)
    })
}

/// Read a JSON body of at most [`BODY_LIMIT`] bytes.
async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, RestError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    check_content_type(content_type)?;
    let too_large = || {
        RestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {BODY_LIMIT} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(BODY_LIMIT));
    let mut seen = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| RestError::bad(format!("cannot read the request body: {e}"), None))?;
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            return Err(too_large());
        }
        if seen <= BODY_LIMIT {
            body.extend_from_slice(&chunk);
        }
    }
    if seen > BODY_LIMIT {
        return Err(too_large());
    }
    Ok(body)
}

fn path_id(req: &HttpRequest) -> Result<i64, RestError> {
    parse_path_id(req.match_info().get("id").unwrap_or_default())
}

fn not_found(id: i64, session_id: i64) -> RestError {
    RestError::new(StatusCode::NOT_FOUND, format!("no training with id {id}"))
        .with_session(session_id)
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    HttpResponse::MethodNotAllowed().json(serde_json::json!({
        "error": format!("{} is not allowed on {}", req.method(), req.path())
    }))
}

/// Version of interop-rs.
#[utoipa::path(get, path = "/", tag = "training",
    responses((status = 200, description = "The version", body = Version)))]
async fn version() -> HttpResponse {
    HttpResponse::Ok().json(Version {
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// Create a training: a `FormationRequest` to the router (file, embedded database, ...).
#[utoipa::path(post, path = "/training/", tag = "training",
    request_body = FormationBody,
    responses(
        (status = 201, description = "Stored", body = CreatedRecord),
        (status = 400, description = "Malformed JSON, wrong type or empty body", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 422, description = "Missing, empty or out-of-range field", body = ErrorBody),
        (status = 502, description = "The production replied with an error", body = ErrorBody),
        (status = 503, description = "The REST service is disabled or stopped", body = ErrorBody),
        (status = 504, description = "No reply in time", body = ErrorBody)))]
async fn create(
    production: web::Data<Production>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let body = read_body(&req, payload).await?;
    let rest = rest_service(&production)?;
    let FormationInput { id, nom, salle } = parse_formation(&body, true)?;
    let id = id.ok_or_else(|| RestError::unprocessable("missing field 'id'", "id"))?;
    let target = rest.settings.target.clone();
    let request = FormationRequest {
        formation: Formation { id, nom, salle },
    };
    let (session_id, reply) = call(&rest, &target, &request).await?;
    let response: FormationResponse = decode(&reply, &target, session_id)?;
    let Formation { id, nom, salle } = request.formation;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/training/{id}")))
        .json(CreatedRecord {
            id,
            nom,
            salle,
            session_id,
            stored_in: response.stored_in,
            skipped: response.skipped,
        }))
}

/// List trainings, ordered by id.
#[utoipa::path(get, path = "/training/", tag = "training",
    params(
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("offset" = Option<i64>, Query, description = "Trainings to skip (default 0)")),
    responses(
        (status = 200, description = "A page", body = TrainingPage),
        (status = 400, description = "Non-integer limit or offset", body = ErrorBody),
        (status = 422, description = "limit below 1 or negative offset", body = ErrorBody),
        (status = 503, description = "The REST service is disabled or stopped", body = ErrorBody)))]
async fn list(
    production: web::Data<Production>,
    req: HttpRequest,
) -> Result<HttpResponse, RestError> {
    let (limit, offset) = parse_page(req.query_string())?;
    let rest = rest_service(&production)?;
    let target = rest.settings.iris_target.clone();
    let (session_id, reply) = call(&rest, &target, &TrainingListRequest { limit, offset }).await?;
    let page: TrainingList = decode(&reply, &target, session_id)?;
    Ok(HttpResponse::Ok().json(TrainingPage {
        trainings: page.trainings.into_iter().map(TrainingItem::from).collect(),
        total: page.total,
        limit,
        offset,
        session_id,
    }))
}

/// Read one training.
#[utoipa::path(get, path = "/training/{id}", tag = "training",
    params(("id" = i64, Path, description = "Training id")),
    responses(
        (status = 200, description = "Found", body = TrainingRecord),
        (status = 400, description = "Non-integer id", body = ErrorBody),
        (status = 404, description = "No such training", body = ErrorBody),
        (status = 422, description = "Id out of range (not above 0)", body = ErrorBody),
        (status = 503, description = "The REST service is disabled or stopped", body = ErrorBody)))]
async fn get_one(
    production: web::Data<Production>,
    req: HttpRequest,
) -> Result<HttpResponse, RestError> {
    let id = path_id(&req)?;
    let rest = rest_service(&production)?;
    let target = rest.settings.iris_target.clone();
    let (session_id, reply) = call(&rest, &target, &TrainingGetRequest { id }).await?;
    found(decode(&reply, &target, session_id)?, id, session_id)
        .map(|t| HttpResponse::Ok().json(record(t, session_id)))
}

/// Change a training.
#[utoipa::path(put, path = "/training/{id}", tag = "training",
    params(("id" = i64, Path, description = "Training id")),
    request_body = FormationUpdateBody,
    responses(
        (status = 200, description = "Updated", body = TrainingRecord),
        (status = 400, description = "Malformed body, or body id is not the path's", body = ErrorBody),
        (status = 404, description = "No such training", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 422, description = "Missing or empty field, or id out of range", body = ErrorBody),
        (status = 503, description = "The REST service is disabled or stopped", body = ErrorBody)))]
async fn update(
    production: web::Data<Production>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let id = path_id(&req)?;
    let body = read_body(&req, payload).await?;
    let rest = rest_service(&production)?;
    let input = parse_formation(&body, false)?;
    if let Some(body_id) = input.id.filter(|b| *b != id) {
        return Err(RestError::bad(
            format!("body id {body_id} does not match the path id {id}"),
            Some("id"),
        ));
    }
    let target = rest.settings.iris_target.clone();
    let request = TrainingUpdateRequest {
        training: Training {
            id,
            name: input.nom,
            room: input.salle,
        },
    };
    let (session_id, reply) = call(&rest, &target, &request).await?;
    found(decode(&reply, &target, session_id)?, id, session_id)
        .map(|t| HttpResponse::Ok().json(record(t, session_id)))
}

/// Delete a training.
#[utoipa::path(delete, path = "/training/{id}", tag = "training",
    params(("id" = i64, Path, description = "Training id")),
    responses(
        (status = 200, description = "Deleted", body = DeletedRecord),
        (status = 400, description = "Non-integer id", body = ErrorBody),
        (status = 404, description = "No such training", body = ErrorBody),
        (status = 422, description = "Id out of range (not above 0)", body = ErrorBody),
        (status = 503, description = "The REST service is disabled or stopped", body = ErrorBody)))]
async fn delete(
    production: web::Data<Production>,
    req: HttpRequest,
) -> Result<HttpResponse, RestError> {
    let id = path_id(&req)?;
    let rest = rest_service(&production)?;
    let target = rest.settings.iris_target.clone();
    let (session_id, reply) = call(&rest, &target, &TrainingDeleteRequest { id }).await?;
    let training = found(decode(&reply, &target, session_id)?, id, session_id)?;
    Ok(HttpResponse::Ok().json(DeletedRecord {
        deleted: training.into(),
        session_id,
    }))
}

fn found(reply: TrainingReply, id: i64, session_id: i64) -> Result<Training, RestError> {
    match reply.training {
        Some(t) if reply.found => Ok(t),
        _ => Err(not_found(id, session_id)),
    }
}

fn record(t: Training, session_id: i64) -> TrainingRecord {
    TrainingRecord {
        id: t.id,
        nom: t.name,
        salle: t.room,
        session_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_calls_map_to_gateway_statuses_with_the_session_when_stored() {
        let reply = SendError::ErrorReply {
            target: "Router".into(),
            message: "boom".into(),
        };
        let e = send_error(reply, 12);
        assert_eq!((e.status.as_u16(), e.session_id), (502, Some(12)));
        let timeout = SendError::Timeout {
            target: "Router".into(),
            timeout_ms: 5,
        };
        let e = send_error(timeout, 13);
        assert_eq!((e.status.as_u16(), e.session_id), (504, Some(13)));
        let e = send_error(SendError::TargetDisabled("Router".into()), 14);
        assert_eq!((e.status.as_u16(), e.session_id), (503, None));
        assert!(e.error.contains("Router"));
    }
}

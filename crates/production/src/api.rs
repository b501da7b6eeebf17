//! The management API under `/api`: what an operator does in IRIS's Management Portal,
//! over HTTP. The portal and the CLI use only this. Also `/metrics` (Prometheus text)
//! and `/api/openapi.json` (this API and the REST service's routes).
//!
//! Every answer is JSON; every error is `{"error": ...}` with a 4xx/5xx status. When
//! `[production] api_token` is set, `/api/*` and `/metrics` require
//! `Authorization: Bearer <token>`.

use std::fmt;
use std::sync::OnceLock;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{error, web, HttpRequest, HttpResponse, ResponseError};
use interop::host::CallReply;
use interop::runtime::{StatsSnapshot, BUCKETS};
use interop::store::{
    EventFilter, EventRow, Level, MessageFilter, MessageRow, MessageStore, Status,
};
use interop::{AnyMessage, Production, SendError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Source of the requests sent by `POST /api/items/{name}/test` (IRIS's testing service).
pub const TESTING_SOURCE: &str = "TestingService";
/// Source of the requests sent by `POST /api/messages/{id}/resend`.
pub const RESEND_SOURCE: &str = "Resend";
/// Page size of the message search when none is asked for, and its largest.
const MESSAGES_LIMIT: (i64, i64) = (100, 1000);
/// Page size of the event log when none is asked for, and its largest.
const LOG_LIMIT: (i64, i64) = (100, 5000);

/// JSON bodies: size-limited, and errors answered as `{"error": ...}`.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(crate::server::BODY_LIMIT)
        .error_handler(|err, _req| {
            let status = match &err {
                error::JsonPayloadError::OverflowKnownLength { .. }
                | error::JsonPayloadError::Overflow { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                error::JsonPayloadError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::BAD_REQUEST,
            };
            let body = json!({ "error": err.to_string() });
            error::InternalError::from_response(err, HttpResponse::build(status).json(body)).into()
        })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, req| {
        let body = json!({ "error": format!("{}: {err}", req.path()) });
        error::InternalError::from_response(err, HttpResponse::BadRequest().json(body)).into()
    })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let body = json!({ "error": format!("malformed query string: {err}") });
        error::InternalError::from_response(err, HttpResponse::BadRequest().json(body)).into()
    })
}

/// Mount `/api/*` and `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        web::resource(path)
            .route(web::get().to(handler))
            .default_service(web::to(method_not_allowed))
    }
    fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        web::resource(path)
            .route(web::post().to(handler))
            .default_service(web::to(method_not_allowed))
    }
    cfg.service(
        web::scope("/api")
            .wrap(from_fn(require_token))
            .app_data(path_config())
            .app_data(query_config())
            .service(get("/production", production_status))
            .service(post("/production/start", start))
            .service(post("/production/stop", stop))
            .service(post("/production/update", update))
            .service(post("/items/{name}/enable", enable))
            .service(post("/items/{name}/disable", disable))
            .service(post("/items/{name}/restart", restart))
            .service(post("/items/{name}/test", test_send))
            .service(get("/message-types", message_types))
            .service(get("/messages", messages))
            .service(post("/messages/resend", resend_many))
            .service(get("/messages/{id}", message))
            .service(post("/messages/{id}/resend", resend))
            .service(get("/sessions/{session_id}/trace", trace))
            .service(get("/log", log))
            .service(post("/purge", purge))
            .service(get("/openapi.json", openapi_json))
            .default_service(web::to(api_not_found)),
    );
    cfg.service(
        web::resource("/metrics")
            .wrap(from_fn(require_token))
            .route(web::get().to(metrics))
            .default_service(web::to(method_not_allowed)),
    );
}

// ---------------------------------------------------------------------------------
// Errors and the token

/// An API error: a status and a JSON body with at least `error`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": error.into() }),
        }
    }

    fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }

    fn internal(error: impl fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }

    fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.body[key] = json!(value);
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.body["error"])
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(&self.body)
    }
}

type ApiResult = Result<HttpResponse, ApiError>;

/// Compare without an early exit, so the time taken does not tell how much matched.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(!*e) ^ e);
    }
    diff == 0
}

/// Refuse the request unless it carries the configured token (when one is set).
async fn require_token<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<Production>>()
        .and_then(|p| p.config().production.api_token);
    if let Some(expected) = expected {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            let response = HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .json(json!({ "error": "missing or wrong API token" }));
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

async fn api_not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "error": format!("no API endpoint {} {}", req.method(), req.path())
    }))
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    HttpResponse::MethodNotAllowed().json(json!({
        "error": format!("{} is not allowed on {}", req.method(), req.path())
    }))
}

/// Run a blocking store query off the async threads.
async fn query<T, F>(production: &Production, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn MessageStore) -> Result<T, interop::StoreError> + Send + 'static,
{
    let store = production.store().clone();
    web::block(move || f(store.as_ref()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// The status of a failed send, and whether its request was stored (has a trace).
fn send_status(error: &SendError) -> StatusCode {
    match error {
        SendError::ErrorReply { .. } => StatusCode::BAD_GATEWAY,
        SendError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        SendError::TargetDisabled(_) | SendError::TargetStopped(_) => StatusCode::CONFLICT,
        SendError::UnknownTarget(_) => StatusCode::NOT_FOUND,
        SendError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        SendError::Duplicate(_) => StatusCode::CONFLICT,
        SendError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"type", "body"}` of a reply, or the error of a failed send with its session.
fn reply_json(reply: &CallReply) -> Result<Value, ApiError> {
    match &reply.result {
        Ok(message) => Ok(message_json(message)),
        Err(e) => {
            let status = send_status(e);
            let session = (e.reached_store() && reply.session_id > 0).then_some(reply.session_id);
            Err(ApiError::new(status, e.to_string()).with("session_id", session))
        }
    }
}

fn message_json(message: &AnyMessage) -> Value {
    json!({ "type": message.type_name(), "body": message.body_value() })
}

// ---------------------------------------------------------------------------------
// Views

/// A stored message's header (IRIS `Ens.MessageHeader`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MessageHeader {
    pub id: i64,
    pub session_id: i64,
    /// The request being handled when this one was sent; for a reply, its request.
    pub parent_id: Option<i64>,
    pub source: String,
    pub target: String,
    /// The message type name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `request` or `reply`.
    pub kind: String,
    /// `queued`, `delivered`, `completed`, `error` or `discarded`.
    pub status: String,
    pub is_error: bool,
    pub error: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    pub processed: Option<String>,
}

impl From<&MessageRow> for MessageHeader {
    fn from(r: &MessageRow) -> Self {
        MessageHeader {
            id: r.id,
            session_id: r.session_id,
            parent_id: r.parent_id,
            source: r.source.clone(),
            target: r.target.clone(),
            type_name: r.type_name.clone(),
            kind: r.kind.clone(),
            status: r.status.clone(),
            is_error: r.is_error,
            error: r.error_text.clone(),
            created: r.created.clone(),
            processed: r.processed.clone(),
        }
    }
}

/// A message's header and its body.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MessageView {
    #[serde(flatten)]
    pub header: MessageHeader,
    /// The body as JSON (a string when the stored text is not JSON).
    pub body: Value,
}

impl From<&MessageRow> for MessageView {
    fn from(r: &MessageRow) -> Self {
        MessageView {
            header: r.into(),
            body: serde_json::from_str(&r.body).unwrap_or_else(|_| Value::String(r.body.clone())),
        }
    }
}

/// An event-log entry.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    pub time: String,
    /// `trace`, `debug`, `info`, `warn`, `error` or `alert`.
    pub level: String,
    pub item: Option<String>,
    pub session_id: Option<i64>,
    pub text: String,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> Self {
        EventView {
            id: e.id,
            time: e.time,
            level: e.level,
            item: e.item,
            session_id: e.session_id,
            text: e.text,
        }
    }
}

/// `GET /api/production`.
#[derive(Serialize, ToSchema)]
pub struct ProductionStatus {
    pub name: String,
    /// `running` or `stopped`.
    pub state: String,
    pub testing_enabled: bool,
    /// Each item: name, class, kind, enabled, pool_size, state, state_detail, queued,
    /// processed, errors, restarts, accepts, targets, settings (secrets masked), comment.
    pub items: Vec<Value>,
}

/// Answer of start, stop and update.
#[derive(Serialize, ToSchema)]
pub struct ControlResult {
    pub ok: bool,
    pub message: String,
    /// Update only: `{started, restarted, stopped, unchanged}` item names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Value>,
}

/// A message type and its example body.
#[derive(Serialize, ToSchema)]
pub struct MessageTypeView {
    #[serde(rename = "type")]
    pub type_name: String,
    pub example: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageTypes {
    pub types: Vec<MessageTypeView>,
}

/// `POST /api/items/{name}/test`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// A registered message type the item accepts.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its body.
    pub body: Value,
}

/// A reply: its type and body.
#[derive(Serialize, ToSchema)]
pub struct ReplyView {
    #[serde(rename = "type")]
    pub type_name: String,
    pub body: Value,
}

/// Answer of a test send.
#[derive(Serialize, ToSchema)]
pub struct TestResult {
    pub session_id: i64,
    /// The request's message id.
    pub request_id: i64,
    pub reply: ReplyView,
}

/// Answer of a resend.
#[derive(Serialize, ToSchema)]
pub struct ResendResult {
    /// The new request's message id.
    pub id: i64,
    pub session_id: i64,
    pub original_id: i64,
    pub reply: ReplyView,
}

/// A page of the message search, newest first.
#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageHeader>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<i64>,
}

/// A session: its messages in causal order and its events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct Trace {
    pub session_id: i64,
    pub messages: Vec<MessageView>,
    pub events: Vec<EventView>,
}

#[derive(Serialize, ToSchema)]
pub struct EventLog {
    pub events: Vec<EventView>,
}

/// `POST /api/purge`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Delete finished messages created more than this many days ago (0: all).
    pub older_than_days: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PurgeResult {
    /// Messages deleted.
    pub deleted: usize,
}

/// Every error.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: String,
}

// ---------------------------------------------------------------------------------
// Production and items

/// The production and its items.
#[utoipa::path(get, path = "/api/production", tag = "production",
    responses((status = 200, body = ProductionStatus), (status = 401, body = ErrorResponse)))]
async fn production_status(production: web::Data<Production>) -> HttpResponse {
    let items: Vec<_> = production.items().iter().map(|i| i.view()).collect();
    HttpResponse::Ok().json(json!({
        "name": production.name(),
        "state": if production.is_running() { "running" } else { "stopped" },
        "testing_enabled": production.config().production.testing_enabled,
        "items": items,
    }))
}

fn done(message: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok().json(ControlResult {
        ok: true,
        message: message.into(),
        report: None,
    })
}

/// Start the production again after a stop.
#[utoipa::path(post, path = "/api/production/start", tag = "production",
    responses((status = 200, body = ControlResult)))]
async fn start(production: web::Data<Production>) -> HttpResponse {
    if production.is_running() {
        return done("the production is already running");
    }
    production.start_again().await;
    done(format!("production '{}' started", production.name()))
}

/// Stop every item (services first, then wait for sessions in flight).
#[utoipa::path(post, path = "/api/production/stop", tag = "production",
    responses((status = 200, body = ControlResult)))]
async fn stop(production: web::Data<Production>) -> HttpResponse {
    if !production.is_running() {
        return done("the production is already stopped");
    }
    production.stop().await;
    done(format!("production '{}' stopped", production.name()))
}

/// Re-read the config file and restart only what changed.
#[utoipa::path(post, path = "/api/production/update", tag = "production",
    responses((status = 200, body = ControlResult),
        (status = 400, description = "The config file is invalid: `errors` lists why", body = ErrorResponse)))]
async fn update(production: web::Data<Production>) -> ApiResult {
    match production.update().await {
        Ok(report) => {
            let message = format!(
                "updated: {} restarted, {} started, {} stopped, {} unchanged",
                report.restarted.len(),
                report.started.len(),
                report.stopped.len(),
                report.unchanged.len()
            );
            Ok(HttpResponse::Ok().json(ControlResult {
                ok: true,
                message,
                report: Some(json!(report)),
            }))
        }
        Err(errors) => {
            let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            Err(ApiError::bad_request(format!(
                "the configuration is invalid ({} error(s)); nothing was changed: {}",
                errors.len(),
                errors.join("; ")
            ))
            .with("errors", errors))
        }
    }
}

#[derive(Clone, Copy)]
enum ItemAction {
    Enable,
    Disable,
    Restart,
}

async fn item_action(production: &Production, name: &str, action: ItemAction) -> ApiResult {
    if production.item(name).is_none() {
        return Err(ApiError::not_found(format!("no item named '{name}'")));
    }
    let result = match action {
        ItemAction::Enable => production.enable(name).await,
        ItemAction::Disable => production.disable(name).await,
        ItemAction::Restart => production.restart(name).await,
    };
    result.map_err(|e| match e {
        SendError::UnknownTarget(_) => ApiError::not_found(format!("no item named '{name}'")),
        SendError::TargetDisabled(_) => ApiError::new(
            StatusCode::CONFLICT,
            format!("item '{name}' is disabled: enable it instead"),
        ),
        other => ApiError::internal(other),
    })?;
    let item = production
        .item(name)
        .ok_or_else(|| ApiError::not_found(format!("no item named '{name}'")))?;
    Ok(HttpResponse::Ok().json(item.view()))
}

/// Enable an item and start it.
#[utoipa::path(post, path = "/api/items/{name}/enable", tag = "items",
    params(("name" = String, Path, description = "Item name")),
    responses((status = 200, description = "The item", body = Object),
        (status = 404, body = ErrorResponse)))]
async fn enable(production: web::Data<Production>, name: web::Path<String>) -> ApiResult {
    item_action(&production, &name, ItemAction::Enable).await
}

/// Stop an item and keep it stopped: requests to it are refused as disabled.
#[utoipa::path(post, path = "/api/items/{name}/disable", tag = "items",
    params(("name" = String, Path, description = "Item name")),
    responses((status = 200, description = "The item", body = Object),
        (status = 404, body = ErrorResponse)))]
async fn disable(production: web::Data<Production>, name: web::Path<String>) -> ApiResult {
    item_action(&production, &name, ItemAction::Disable).await
}

/// Stop and start an item's instances.
#[utoipa::path(post, path = "/api/items/{name}/restart", tag = "items",
    params(("name" = String, Path, description = "Item name")),
    responses((status = 200, description = "The item", body = Object),
        (status = 404, body = ErrorResponse),
        (status = 409, description = "The item is disabled", body = ErrorResponse)))]
async fn restart(production: web::Data<Production>, name: web::Path<String>) -> ApiResult {
    item_action(&production, &name, ItemAction::Restart).await
}

// ---------------------------------------------------------------------------------
// Testing, messages, traces, log

/// Every registered message type, with an example body where the type has one.
#[utoipa::path(get, path = "/api/message-types", tag = "messages",
    responses((status = 200, body = MessageTypes)))]
async fn message_types(production: web::Data<Production>) -> HttpResponse {
    let types = production.registry().types();
    HttpResponse::Ok().json(MessageTypes {
        types: types
            .names()
            .map(|n| MessageTypeView {
                type_name: n.to_string(),
                example: types.example(n),
            })
            .collect(),
    })
}

/// Send a message to an item as a new session (the testing service).
#[utoipa::path(post, path = "/api/items/{name}/test", tag = "items",
    params(("name" = String, Path, description = "Item name")),
    request_body = TestRequest,
    responses((status = 200, body = TestResult),
        (status = 400, description = "Unknown message type", body = ErrorResponse),
        (status = 403, description = "testing_enabled is off", body = ErrorResponse),
        (status = 404, description = "No such item", body = ErrorResponse),
        (status = 409, description = "The item is disabled or stopped", body = ErrorResponse),
        (status = 415, description = "Content-Type is not JSON", body = ErrorResponse),
        (status = 422, description = "The body is not of that type, or the item does not accept it", body = ErrorResponse),
        (status = 502, description = "The item replied with an error (`session_id` to trace)", body = ErrorResponse),
        (status = 504, description = "No reply in time", body = ErrorResponse)))]
async fn test_send(
    production: web::Data<Production>,
    name: web::Path<String>,
    request: web::Json<TestRequest>,
) -> ApiResult {
    if !production.config().production.testing_enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "testing is disabled: set testing_enabled = true in [production]",
        ));
    }
    let Some(item) = production.item(&name) else {
        return Err(ApiError::not_found(format!("no item named '{name}'")));
    };
    let TestRequest { type_name, body } = request.into_inner();
    let types = production.registry().types();
    if !types.contains(&type_name) {
        return Err(ApiError::bad_request(format!(
            "unknown message type '{type_name}' (known: {})",
            types.names().collect::<Vec<_>>().join(", ")
        )));
    }
    let message = types
        .check(&type_name, &body)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let accepts = &item.class().accepts;
    if !accepts.contains(&type_name.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "item '{name}' (class {}) does not accept {type_name} (accepts: {})",
                item.class().name,
                if accepts.is_empty() {
                    "nothing: a service takes its input from outside".to_string()
                } else {
                    accepts.join(", ")
                }
            ),
        ));
    }
    let reply = production.send(TESTING_SOURCE, &name, message).await;
    let _ = production.store().flush().await;
    let reply_body = reply_json(&reply)?;
    Ok(HttpResponse::Ok().json(json!({
        "session_id": reply.session_id,
        "request_id": reply.request_id,
        "reply": reply_body,
    })))
}

/// Query of `GET /api/messages`; empty values mean "any".
#[derive(Deserialize)]
struct MessagesQuery {
    session: Option<String>,
    source: Option<String>,
    target: Option<String>,
    #[serde(rename = "type")]
    type_name: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// A non-empty query value.
fn given(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn integer(name: &str, value: Option<String>) -> Result<Option<i64>, ApiError> {
    given(value)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("'{name}' must be an integer, got '{v}'"))
                    .with("field", name)
            })
        })
        .transpose()
}

/// A page size: default, at least 1, cut down to the maximum.
fn page_size(value: Option<String>, (default, max): (i64, i64)) -> Result<i64, ApiError> {
    match integer("limit", value)? {
        None => Ok(default),
        Some(l) if l < 1 => Err(ApiError::bad_request(format!(
            "'limit' must be at least 1, got {l}"
        ))
        .with("field", "limit")),
        Some(l) => Ok(l.min(max)),
    }
}

/// Search messages, newest first.
#[utoipa::path(get, path = "/api/messages", tag = "messages",
    params(
        ("session" = Option<i64>, Query, description = "Session id"),
        ("source" = Option<String>, Query, description = "Source item"),
        ("target" = Option<String>, Query, description = "Target item"),
        ("type" = Option<String>, Query, description = "Message type"),
        ("status" = Option<String>, Query, description = "queued, delivered, completed, error or discarded"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("before" = Option<i64>, Query, description = "Only ids below this (the previous page's next_before)")),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorResponse)))]
async fn messages(production: web::Data<Production>, q: web::Query<MessagesQuery>) -> ApiResult {
    let q = q.into_inner();
    let status = match given(q.status) {
        None => None,
        Some(s) => Some(
            Status::parse(&s)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown status '{s}' (queued, delivered, completed, error, discarded)"
                    ))
                    .with("field", "status")
                })?
                .as_str()
                .to_string(),
        ),
    };
    let limit = page_size(q.limit, MESSAGES_LIMIT)?;
    let filter = MessageFilter {
        session: integer("session", q.session)?,
        source: given(q.source),
        target: given(q.target),
        type_name: given(q.type_name),
        status,
        before: integer("before", q.before)?,
        limit: Some(limit),
    };
    let rows = query(&production, move |s| s.messages(&filter)).await?;
    let next_before = if rows.len() as i64 == limit {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(MessagePage {
        messages: rows.iter().map(MessageHeader::from).collect(),
        next_before,
    }))
}

async fn stored_message(production: &Production, id: i64) -> Result<MessageRow, ApiError> {
    query(production, move |s| s.message(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no message with id {id}")))
}

/// One message: header and body.
#[utoipa::path(get, path = "/api/messages/{id}", tag = "messages",
    params(("id" = i64, Path, description = "Message id")),
    responses((status = 200, body = MessageView), (status = 400, description = "Non-integer id", body = ErrorResponse),
        (status = 404, body = ErrorResponse)))]
async fn message(production: web::Data<Production>, id: web::Path<i64>) -> ApiResult {
    let row = stored_message(&production, *id).await?;
    Ok(HttpResponse::Ok().json(MessageView::from(&row)))
}

/// Send a stored request again, to the same target, as a new session.
#[utoipa::path(post, path = "/api/messages/{id}/resend", tag = "messages",
    params(("id" = i64, Path, description = "Id of a stored request")),
    responses((status = 200, body = ResendResult),
        (status = 400, description = "Not a request, or its body no longer fits its type", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 409, description = "The target is disabled or stopped", body = ErrorResponse),
        (status = 502, body = ErrorResponse), (status = 504, body = ErrorResponse)))]
async fn resend(production: web::Data<Production>, id: web::Path<i64>) -> ApiResult {
    let original = *id;
    let row = stored_message(&production, original).await?;
    if row.kind != "request" {
        return Err(ApiError::bad_request(format!(
            "message {original} is a {}: only requests can be resent",
            row.kind
        )));
    }
    let body: Value = serde_json::from_str(&row.body).map_err(|e| {
        ApiError::bad_request(format!("message {original}: stored body is not JSON: {e}"))
    })?;
    let message = production
        .registry()
        .types()
        .check(&row.type_name, &body)
        .map_err(|e| ApiError::bad_request(format!("message {original} cannot be resent: {e}")))?;
    let reply = production.send(RESEND_SOURCE, &row.target, message).await;
    if reply.request_id > 0 {
        production.event(
            Level::Info,
            None,
            Some(reply.session_id),
            &format!(
                "resend of message {original} (session {}) to '{}' as message {}",
                row.session_id, row.target, reply.request_id
            ),
        );
    }
    let _ = production.store().flush().await;
    let reply_body = reply_json(&reply).map_err(|e| e.with("original_id", original))?;
    Ok(HttpResponse::Ok().json(json!({
        "id": reply.request_id,
        "session_id": reply.session_id,
        "original_id": original,
        "reply": reply_body,
    })))
}

/// What `POST /api/messages/resend` resends: the stored requests matching all the
/// filters given (at least one), oldest first.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendFilter {
    pub session: Option<i64>,
    pub source: Option<String>,
    pub target: Option<String>,
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    /// Usually `error`: the requests that failed.
    pub status: Option<String>,
    /// At most this many (default 1000, at most 10000).
    pub limit: Option<i64>,
}

/// Resend every stored request matching a filter (e.g. all that failed at a target
/// during an outage), each as a new session linked to its original in the event log.
#[utoipa::path(post, path = "/api/messages/resend", tag = "messages",
    request_body = ResendFilter,
    responses((status = 200, description = "Counts, and one result per resent request"),
        (status = 400, body = ErrorResponse),
        (status = 415, description = "Content-Type is not JSON", body = ErrorResponse)))]
async fn resend_many(
    production: web::Data<Production>,
    filter: web::Json<ResendFilter>,
) -> ApiResult {
    use futures_util::stream::{self, StreamExt};
    let f = filter.into_inner();
    if f.session.is_none()
        && f.source.is_none()
        && f.target.is_none()
        && f.type_name.is_none()
        && f.status.is_none()
    {
        return Err(ApiError::bad_request(
            "give at least one filter (session, source, target, type, status)",
        ));
    }
    let limit = f.limit.unwrap_or(1000).clamp(1, 10_000);
    let filter = MessageFilter {
        session: f.session,
        source: f.source,
        target: f.target,
        type_name: f.type_name,
        status: f.status,
        before: None,
        limit: Some(limit),
    };
    let _ = production.store().flush().await;
    // The search pages newest first, 1000 a page: gather, then resend oldest first.
    let mut rows = Vec::new();
    let mut page = filter;
    loop {
        let current = page.clone();
        let found = query(&production, move |s| s.messages(&current)).await?;
        let last = found.last().map(|r| r.id);
        let full = found.len() as i64 >= page.limit.unwrap_or(1000).min(1000);
        rows.extend(found.into_iter().filter(|r| r.kind == "request"));
        match last {
            Some(id) if full && (rows.len() as i64) < limit => page.before = Some(id),
            _ => break,
        }
    }
    rows.truncate(limit as usize);
    rows.reverse();
    let results: Vec<Value> = stream::iter(rows)
        .map(|row| {
            let production = production.clone();
            async move {
                let body: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
                let message = match production.registry().types().check(&row.type_name, &body) {
                    Ok(m) => m,
                    Err(e) => return json!({ "original_id": row.id, "error": e }),
                };
                let reply = production.send(RESEND_SOURCE, &row.target, message).await;
                production.event(
                    Level::Info,
                    None,
                    Some(reply.session_id),
                    &format!(
                        "resend of message {} (session {}) to '{}' as message {}",
                        row.id, row.session_id, row.target, reply.request_id
                    ),
                );
                match reply.result {
                    Ok(_) => json!({ "original_id": row.id, "id": reply.request_id, "session_id": reply.session_id }),
                    Err(e) => json!({ "original_id": row.id, "id": reply.request_id, "session_id": reply.session_id, "error": e.to_string() }),
                }
            }
        })
        .buffered(32)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.get("error").is_some()).count();
    let _ = production.store().flush().await;
    Ok(HttpResponse::Ok().json(json!({
        "resent": results.len(),
        "ok": results.len() - failed,
        "failed": failed,
        "results": results,
    })))
}

/// A session's messages in causal order, and its events.
#[utoipa::path(get, path = "/api/sessions/{session_id}/trace", tag = "messages",
    params(("session_id" = i64, Path, description = "Session id")),
    responses((status = 200, body = Trace), (status = 400, description = "Non-integer id", body = ErrorResponse),
        (status = 404, body = ErrorResponse)))]
async fn trace(production: web::Data<Production>, session_id: web::Path<i64>) -> ApiResult {
    let session_id = *session_id;
    let _ = production.store().flush().await;
    let (rows, events) = query(&production, move |s| {
        let rows = s.trace(session_id)?;
        let events = s.events(&EventFilter {
            session: Some(session_id),
            limit: Some(LOG_LIMIT.1),
            ..Default::default()
        })?;
        Ok((rows, events))
    })
    .await?;
    if rows.is_empty() && events.is_empty() {
        return Err(ApiError::not_found(format!("no session {session_id}")));
    }
    let mut events: Vec<EventView> = events.into_iter().map(EventView::from).collect();
    events.reverse();
    Ok(HttpResponse::Ok().json(Trace {
        session_id,
        messages: rows.iter().map(MessageView::from).collect(),
        events,
    }))
}

#[derive(Deserialize)]
struct LogQuery {
    level: Option<String>,
    item: Option<String>,
    limit: Option<String>,
}

/// The event log, newest first.
#[utoipa::path(get, path = "/api/log", tag = "log",
    params(
        ("level" = Option<String>, Query, description = "Only this level: trace, debug, info, warn, error, alert"),
        ("item" = Option<String>, Query, description = "Only this item"),
        ("limit" = Option<i64>, Query, description = "Entries, 1 to 5000 (default 100)")),
    responses((status = 200, body = EventLog), (status = 400, body = ErrorResponse)))]
async fn log(production: web::Data<Production>, q: web::Query<LogQuery>) -> ApiResult {
    let q = q.into_inner();
    let level = match given(q.level) {
        None => None,
        Some(l) => Some(
            Level::parse(&l.to_ascii_lowercase())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown level '{l}' (trace, debug, info, warn, error, alert)"
                    ))
                    .with("field", "level")
                })?
                .as_str()
                .to_string(),
        ),
    };
    let filter = EventFilter {
        level,
        item: given(q.item),
        session: None,
        limit: Some(page_size(q.limit, LOG_LIMIT)?),
    };
    let events = query(&production, move |s| s.events(&filter)).await?;
    Ok(HttpResponse::Ok().json(EventLog {
        events: events.into_iter().map(EventView::from).collect(),
    }))
}

/// The cutoff of a purge: now minus `days`, as the store writes times.
fn purge_cutoff(days: i64) -> Result<String, ApiError> {
    if days < 0 {
        return Err(ApiError::bad_request(format!(
            "older_than_days must be 0 or more, got {days}"
        ))
        .with("field", "older_than_days"));
    }
    chrono::TimeDelta::try_days(days)
        .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .ok_or_else(|| {
            ApiError::bad_request(format!("older_than_days {days} is too large"))
                .with("field", "older_than_days")
        })
}

/// Delete finished messages older than N days (queued and delivered ones are kept).
#[utoipa::path(post, path = "/api/purge", tag = "messages",
    request_body = PurgeRequest,
    responses((status = 200, body = PurgeResult), (status = 400, body = ErrorResponse)))]
async fn purge(production: web::Data<Production>, request: web::Json<PurgeRequest>) -> ApiResult {
    let days = request.older_than_days;
    let cutoff = purge_cutoff(days)?;
    let _ = production.store().flush().await;
    let deleted = query(&production, move |s| s.purge(&cutoff)).await?;
    production.event(
        Level::Info,
        None,
        None,
        &format!("purge: deleted {deleted} messages older than {days} day(s)"),
    );
    Ok(HttpResponse::Ok().json(PurgeResult { deleted }))
}

// ---------------------------------------------------------------------------------
// Metrics and OpenAPI

/// A Prometheus label value, escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text of the items' counters.
pub fn render_metrics(items: &[(String, StatsSnapshot)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, value: &dyn Fn(&StatsSnapshot) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (item, s) in items {
                let _ = writeln!(out, "{name}{{item=\"{}\"}} {}", label(item), value(s));
            }
        };
    family(
        "interop_messages_processed_total",
        "counter",
        "Requests an item finished handling (replied to, failed or timed out).",
        &|s| s.processed.to_string(),
    );
    family(
        "interop_message_errors_total",
        "counter",
        "Requests that ended in an error reply or a timeout.",
        &|s| s.errors.to_string(),
    );
    family(
        "interop_queue_depth",
        "gauge",
        "Requests delivered to an item and not yet answered.",
        &|s| s.queued.to_string(),
    );
    family(
        "interop_item_restarts_total",
        "counter",
        "Times the production rebuilt an item's instance after a failure.",
        &|s| s.restarts.to_string(),
    );
    family(
        "interop_alerts_total",
        "counter",
        "Alerts an item raised (each counted, even those held back from the alert target).",
        &|s| s.alerts.to_string(),
    );
    let name = "interop_processing_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a request being stored to its reply, per target item."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (item, s) in items {
        let item = label(item);
        // The counters are cumulative already: each bucket counts every request at or
        // under its bound.
        for (bound, count) in BUCKETS.iter().zip(s.buckets.iter()) {
            let _ = writeln!(
                out,
                "{name}_bucket{{item=\"{item}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{item=\"{item}\",le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(out, "{name}_sum{{item=\"{item}\"}} {}", s.sum_seconds);
        let _ = writeln!(out, "{name}_count{{item=\"{item}\"}} {}", s.count);
    }
    let _ = writeln!(
        out,
        "# HELP interop_up Whether the production's HTTP server answers."
    );
    let _ = writeln!(out, "# TYPE interop_up gauge");
    let _ = writeln!(out, "interop_up 1");
    out
}

/// Per-item counters in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "production",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain; version=0.0.4")))]
async fn metrics(production: web::Data<Production>) -> HttpResponse {
    let items: Vec<(String, StatsSnapshot)> = production
        .items()
        .iter()
        .map(|i| (i.name().to_string(), i.stats.snapshot()))
        .collect();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render_metrics(&items))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "interop-rs production", description = "The management API (`/api`, `/metrics`) and the REST service routes (`/training`)."),
    paths(
        production_status, start, stop, update, enable, disable, restart, test_send,
        message_types, messages, message, resend, resend_many, trace, log, purge, metrics
    ),
    components(schemas(
        ProductionStatus, ControlResult, MessageTypes, MessageTypeView, TestRequest, TestResult,
        ReplyView, ResendResult, MessageHeader, MessageView, MessagePage, Trace, EventView,
        EventLog, PurgeRequest, PurgeResult, ErrorResponse
    )),
    modifiers(&BearerToken),
    tags(
        (name = "production", description = "Start, stop, update; metrics"),
        (name = "items", description = "Enable, disable, restart, test"),
        (name = "messages", description = "Message viewer, traces, resend, purge"),
        (name = "log", description = "The event log")
    )
)]
struct ManagementApi;

/// `/api/*` and `/metrics` take a bearer token when `api_token` is set.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            if !(path.starts_with("/api") || path == "/metrics") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
            }
        }
    }
}

/// The whole HTTP face: this API and the REST service's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ManagementApi::openapi();
    doc.merge(svc_rest::openapi());
    doc
}

/// The OpenAPI document (JSON).
async fn openapi_json() -> ApiResult {
    static DOC: OnceLock<Result<String, String>> = OnceLock::new();
    let doc = DOC.get_or_init(|| openapi().to_json().map_err(|e| e.to_string()));
    match doc {
        Ok(text) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(text.clone())),
        Err(e) => Err(ApiError::internal(format!("OpenAPI document: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
    }

    #[test]
    fn send_failures_map_to_statuses() {
        let timeout = SendError::Timeout {
            target: "X".into(),
            timeout_ms: 1,
        };
        assert_eq!(
            (send_status(&timeout), timeout.reached_store()),
            (StatusCode::GATEWAY_TIMEOUT, true)
        );
        let disabled = SendError::TargetDisabled("X".into());
        assert_eq!(
            (send_status(&disabled), disabled.reached_store()),
            (StatusCode::CONFLICT, false)
        );
        let reply = CallReply {
            session_id: 4,
            request_id: 4,
            result: Err(SendError::ErrorReply {
                target: "X".into(),
                message: "boom".into(),
            }),
        };
        let e = reply_json(&reply).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        assert_eq!(e.body["session_id"], 4);
    }

    #[test]
    fn purge_cutoffs() {
        assert!(purge_cutoff(0).unwrap().ends_with('Z'));
        assert!(purge_cutoff(-1).is_err());
        assert!(purge_cutoff(i64::MAX).is_err());
        assert!(purge_cutoff(30).unwrap() < purge_cutoff(0).unwrap());
    }

    #[test]
    fn metrics_text() {
        let snapshot = StatsSnapshot {
            queued: 2,
            processed: 5,
            errors: 1,
            restarts: 0,
            buckets: vec![0, 1, 1, 2, 3, 4, 5, 5, 5, 5],
            count: 5,
            sum_seconds: 0.25,
            ..Default::default()
        };
        let text = render_metrics(&[("Op\"1".into(), snapshot)]);
        assert!(text.contains("interop_messages_processed_total{item=\"Op\\\"1\"} 5"));
        assert!(text.contains("interop_processing_seconds_bucket{item=\"Op\\\"1\",le=\"+Inf\"} 5"));
        assert!(
            text.contains("interop_processing_seconds_bucket{item=\"Op\\\"1\",le=\"0.0001\"} 0")
        );
        assert!(text.contains("interop_up 1"));
        for family in [
            "interop_messages_processed_total",
            "interop_message_errors_total",
            "interop_queue_depth",
            "interop_item_restarts_total",
            "interop_alerts_total",
            "interop_processing_seconds",
            "interop_up",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        }
    }
}

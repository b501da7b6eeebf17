//! The management API under `/api`: what an operator does in IRIS's Management Portal,
//! over HTTP. The portal and the CLI use only this.

use actix_web::{error, web, HttpResponse};
use interop::Production;
use serde_json::json;

/// JSON bodies: size-limited, and errors answered as `{"error": ...}`.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(crate::server::BODY_LIMIT)
        .error_handler(|err, _req| {
            let status = match &err {
                error::JsonPayloadError::OverflowKnownLength { .. }
                | error::JsonPayloadError::Overflow { .. } => {
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE
                }
                error::JsonPayloadError::ContentType => {
                    actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE
                }
                _ => actix_web::http::StatusCode::BAD_REQUEST,
            };
            let body = json!({ "error": err.to_string() });
            error::InternalError::from_response(err, HttpResponse::build(status).json(body)).into()
        })
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/production", web::get().to(production_status));
}

async fn production_status(production: web::Data<Production>) -> HttpResponse {
    let items: Vec<_> = production.items().iter().map(|i| i.view()).collect();
    HttpResponse::Ok().json(json!({
        "name": production.name(),
        "state": if production.is_running() { "running" } else { "stopped" },
        "testing_enabled": production.config().production.testing_enabled,
        "items": items,
    }))
}

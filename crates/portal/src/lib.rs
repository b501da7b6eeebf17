//! Browser Management Portal for interop-rs.
//!
//! A small single-page application (plain HTML, CSS and vanilla JavaScript, no
//! build step, no CDN) compiled into the binary with `include_str!` and served
//! under `/portal`. The page talks to the management API under `/api`
//! (production, items, message viewer, visual trace, event log, test).
//!
//! Mount it at the application root: `App::new().configure(portal::configure)`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// The SPA shell, served for `/portal`, `/portal/` and every non-asset path below it.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");

/// Static assets served under `/portal/assets/`: `(file name, content type, content)`.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
];

/// Registers the portal routes (`GET /portal`, `/portal/assets/*`, SPA fallback).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/portal", web::get().to(index))
        .route("/portal/assets/{name:.*}", web::get().to(asset))
        .route("/portal/{tail:.*}", web::get().to(index));
}

fn respond(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

async fn index() -> HttpResponse {
    respond("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(req: HttpRequest) -> HttpResponse {
    let name = req.match_info().get("name").unwrap_or_default();
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => respond(content_type, body),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("asset not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as awtest;
    use actix_web::{http::StatusCode, App};

    async fn get(path: &str) -> (StatusCode, String, String, String) {
        let app = awtest::init_service(App::new().configure(configure)).await;
        let res =
            awtest::call_service(&app, awtest::TestRequest::get().uri(path).to_request()).await;
        let status = res.status();
        let h = |name| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (ct, cc) = (h(header::CONTENT_TYPE), h(header::CACHE_CONTROL));
        let body = String::from_utf8(awtest::read_body(res).await.to_vec()).unwrap();
        (status, ct, cc, body)
    }

    #[actix_web::test]
    async fn serves_index() {
        for path in ["/portal", "/portal/"] {
            let (status, ct, cc, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(ct.starts_with("text/html"), "{path}: {ct}");
            assert_eq!(cc, "no-cache");
            assert!(body.contains("/portal/assets/app.js"));
        }
    }

    #[actix_web::test]
    async fn serves_assets_with_content_types() {
        let (status, ct, cc, body) = get("/portal/assets/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/javascript"), "{ct}");
        assert_eq!(cc, "no-cache");
        assert_eq!(body, ASSETS[0].2);
        let (status, ct, _, _) = get("/portal/assets/style.css").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/css"), "{ct}");
        let (status, _, _, _) = get("/portal/assets/missing.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[actix_web::test]
    async fn spa_fallback_serves_index() {
        let (status, ct, _, body) = get("/portal/trace/123").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/html"), "{ct}");
        assert_eq!(body, INDEX_HTML);
    }
}

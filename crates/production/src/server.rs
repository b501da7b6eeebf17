//! The production's HTTP server: one actix-web server for the REST service routes of
//! the registered classes, the management API, `/metrics` and the portal.

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use interop::Production;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A bound, running HTTP server.
pub struct RunningServer {
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl RunningServer {
    /// Stop accepting connections and finish the requests in progress.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Refuse to expose the API on a non-loopback address without a token.
pub fn check_exposure(config: &interop::ProductionConfig) -> Result<(), String> {
    let http = &config.production.http;
    let loopback = http
        .parse::<SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or_else(|_| http.starts_with("localhost:"));
    if !loopback && config.production.api_token.is_none() {
        return Err(format!(
            "[production] http = \"{http}\" is not a loopback address and no api_token is set: \
             set api_token (e.g. api_token = \"${{INTEROP_API_TOKEN}}\") or bind 127.0.0.1"
        ));
    }
    Ok(())
}

/// Bind `[production] http` (port 0 picks a free port) and start serving.
pub fn serve(production: Production) -> std::io::Result<RunningServer> {
    let addr = production.config().production.http;
    serve_on(production, &addr)
}

pub fn serve_on(production: Production, addr: &str) -> std::io::Result<RunningServer> {
    let data = web::Data::new(production.clone());
    let routes: Vec<_> = production
        .registry()
        .classes()
        .filter_map(|c| c.http)
        .collect();
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .app_data(crate::api::json_config())
            .configure(crate::api::configure)
            .configure(portal::configure);
        for r in &routes {
            app = app.configure(*r);
        }
        app
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(10)
    .bind(addr)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("no address bound"))?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(RunningServer {
        addr: bound,
        handle,
    })
}

#[cfg(test)]
mod tests {
    use super::check_exposure;

    fn config(http: &str, token: Option<&str>) -> interop::ProductionConfig {
        let token = token.map_or(String::new(), |t| format!("api_token = \"{t}\"\n"));
        interop::ProductionConfig::parse(
            &format!("[production]\nname = \"x\"\nhttp = \"{http}\"\n{token}"),
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn an_open_api_off_loopback_is_refused_naming_the_address_and_the_fix() {
        let err = check_exposure(&config("0.0.0.0:8080", None)).unwrap_err();
        assert!(
            err.contains("0.0.0.0:8080") && err.contains("api_token"),
            "{err}"
        );
        assert!(check_exposure(&config("0.0.0.0:8080", Some("s3cret"))).is_ok());
        assert!(check_exposure(&config("127.0.0.1:8080", None)).is_ok());
        assert!(check_exposure(&config("[::1]:8080", None)).is_ok());
        assert!(check_exposure(&config("localhost:8080", None)).is_ok());
    }
}

//! `spawn_app()`: a production from a temp config, served on a free port inside the
//! test's actix system, and blocking HTTP calls run off that system's thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use interop::Production;
use production::server::RunningServer;
use serde_json::Value;

/// What differs between the test productions.
#[derive(Clone, Debug)]
pub struct Options {
    pub testing_enabled: bool,
    pub api_token: Option<String>,
    pub rest_enabled: bool,
    /// Folder of FileOperation's output (default `<dir>/out`).
    pub out_dir: Option<PathBuf>,
    /// Reply timeout of sync requests.
    pub timeout_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            testing_enabled: true,
            api_token: None,
            rest_enabled: true,
            out_dir: None,
            timeout_ms: 10_000,
        }
    }
}

/// The formation production without the CSV service and PostgreSQL.
pub fn config_text(dir: &Path, o: &Options, filename: &str) -> String {
    let out = o.out_dir.clone().unwrap_or_else(|| dir.join("out"));
    let token = o
        .api_token
        .as_ref()
        .map(|t| format!("api_token = \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[production]
name = "ApiTest"
data_dir = "{data}"
http = "127.0.0.1:0"
testing_enabled = {testing}
default_timeout_ms = {timeout}
{token}
[[item]]
name = "RestService"
class = "svc-rest"
enabled = {rest}
[item.settings]
target = "Router"
iris_target = "IrisOperation"

[[item]]
name = "Router"
class = "proc-router"
[item.settings]
file_target = "FileOperation"
iris_target = "IrisOperation"
postgres_target = ""
postgres_rule = "never"

[[item]]
name = "FileOperation"
class = "op-file"
[item.settings]
path = "{out}"
filename = "{filename}"

[[item]]
name = "IrisOperation"
class = "op-iris"
"#,
        data = dir.join("data").display(),
        testing = o.testing_enabled,
        timeout = o.timeout_ms,
        rest = o.rest_enabled,
        out = out.display(),
    )
}

pub struct TestApp {
    pub url: String,
    pub production: Production,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub options: Options,
    server: RunningServer,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
}

impl Reply {
    /// The `error` of a JSON error body.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("production.toml");
    std::fs::write(
        &config_path,
        config_text(dir.path(), &options, "formation.txt"),
    )
    .expect("write config");
    let production = Production::start_file(&config_path, Arc::new(production::registry()))
        .await
        .expect("production starts");
    let server =
        production::server::serve_on(production.clone(), "127.0.0.1:0").expect("server binds");
    TestApp {
        url: format!("http://{}", server.addr),
        production,
        dir,
        config_path,
        options,
        server,
    }
}

/// One blocking HTTP call; `token` goes in `Authorization: Bearer`.
pub fn call_blocking(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> Reply {
    let mut request = agent.request(method, url);
    if let Some(ct) = content_type {
        request = request.set("Content-Type", ct);
    }
    if let Some(t) = token {
        request = request.set("Authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(b) => request.send_bytes(b),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let content_type = response.header("Content-Type").unwrap_or("").to_string();
    let text = response.into_string().expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        content_type,
        text,
        json,
    }
}

impl TestApp {
    pub fn out_dir(&self) -> PathBuf {
        self.options
            .out_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("out"))
    }

    /// A request with the app's token (if any).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let token = self.options.api_token.clone();
        self.request_with_token(method, path, content_type, body, token)
            .await
    }

    pub async fn request_with_token(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        token: Option<String>,
    ) -> Reply {
        let url = format!("{}{path}", self.url);
        let method = method.to_string();
        let content_type = content_type.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            call_blocking(
                &ureq::agent(),
                &method,
                &url,
                content_type.as_deref(),
                body.as_deref(),
                token.as_deref(),
            )
        })
        .await
        .expect("HTTP call thread")
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None, None).await
    }

    pub async fn post(&self, path: &str) -> Reply {
        self.request("POST", path, None, None).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        self.send_json("POST", path, body).await
    }

    pub async fn put_json(&self, path: &str, body: Value) -> Reply {
        self.send_json("PUT", path, body).await
    }

    async fn send_json(&self, method: &str, path: &str, body: Value) -> Reply {
        self.request(
            method,
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// Create a training through `POST /training/`, expecting 201; gives its session.
    pub async fn create(&self, id: i64, nom: &str, salle: &str) -> i64 {
        let r = self
            .post_json(
                "/training/",
                serde_json::json!({"id": id, "nom": nom, "salle": salle}),
            )
            .await;
        assert_eq!(r.status, 201, "POST /training/ {id}: {}", r.text);
        r.json["session_id"].as_i64().expect("session_id")
    }

    /// Rewrite the config file (FileOperation writing `filename`).
    pub fn rewrite_config(&self, filename: &str) {
        std::fs::write(
            &self.config_path,
            config_text(self.dir.path(), &self.options, filename),
        )
        .expect("rewrite config");
    }

    pub async fn stop(self) {
        self.server.stop().await;
        self.production.stop().await;
    }
}

/// Lines of a text file ("" when missing).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

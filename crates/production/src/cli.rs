//! The operator's CLI: each subcommand is one call of the management API of a running
//! production (`production status`, `production trace 12`, ...), printed as an aligned
//! table or, with `--json`, as the raw answer.
//!
//! Exit codes: 0 done, 1 the API answered an error, 2 usage, 3 cannot connect.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use interop::ProductionConfig;
use serde_json::{json, Value};

/// Where the production is when neither `--url` nor a readable config says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// How to reach the API; every subcommand takes these.
#[derive(Args, Clone, Debug, Default)]
pub struct Connection {
    /// Base URL of the running production [default: http:// + `http` of --config, else
    /// http://127.0.0.1:8080].
    #[arg(long)]
    pub url: Option<String>,
    /// API token [default: `api_token` of --config].
    #[arg(long, env = "INTEROP_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON answer as is.
    #[arg(long)]
    pub json: bool,
}

/// The subcommands that talk to a running production.
#[derive(Subcommand, Clone, Debug)]
pub enum ApiCommand {
    /// The production's state and its items.
    Status {
        #[command(flatten)]
        conn: Connection,
    },
    /// Send a message to an item as a new session (needs `testing_enabled`).
    Test {
        /// The item to send to.
        item: String,
        /// The message type, e.g. FormationRequest.
        #[arg(long = "type")]
        type_name: String,
        /// The body as JSON, or @FILE to read it from a file.
        #[arg(long)]
        body: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// A session's messages, indented by who called whom, and its events.
    Trace {
        session: i64,
        #[command(flatten)]
        conn: Connection,
    },
    /// Search the message store, newest first.
    Messages {
        #[arg(long)]
        session: Option<i64>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// Message type.
        #[arg(long = "type")]
        type_name: Option<String>,
        /// queued, delivered, completed, error or discarded.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
        /// Only ids below this one (the next page).
        #[arg(long)]
        before: Option<i64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// The event log, newest first.
    Log {
        /// trace, debug, info, warn, error or alert.
        #[arg(long)]
        level: Option<String>,
        #[arg(long)]
        item: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Re-read the production's config file and restart what changed.
    Update {
        #[command(flatten)]
        conn: Connection,
    },
    /// Start a stopped production's items again.
    Start {
        #[command(flatten)]
        conn: Connection,
    },
    /// Stop every item of the production (the server keeps answering).
    Stop {
        #[command(flatten)]
        conn: Connection,
    },
    /// Resend a stored request (`resend 42`), or every request matching filters
    /// (`resend --target PostgresOperation --status error`), each as a new session.
    Resend {
        /// The id of one stored request.
        id: Option<i64>,
        #[arg(long)]
        session: Option<i64>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long = "type")]
        type_name: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete finished messages older than N days.
    Purge {
        #[arg(long)]
        older_than_days: i64,
        #[command(flatten)]
        conn: Connection,
    },
    /// Enable an item and start it.
    Enable {
        item: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Stop an item and keep it stopped.
    Disable {
        item: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Restart an item's instances.
    Restart {
        item: String,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Why a subcommand failed; each maps to an exit code.
#[derive(Debug)]
pub enum CliError {
    /// The API answered with an error status (exit 1).
    Api {
        status: u16,
        error: String,
        body: Value,
    },
    /// Bad arguments (exit 2).
    Usage(String),
    /// No answer from the URL (exit 3).
    Connect { url: String, message: String },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } => 1,
            CliError::Usage(_) => 2,
            CliError::Connect { .. } => 3,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Api { status, error, .. } => write!(f, "{error} (HTTP {status})"),
            CliError::Usage(m) => write!(f, "{m}"),
            CliError::Connect { url, message } => write!(f, "cannot connect to {url}: {message}"),
        }
    }
}

/// A blocking client of the management API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// `base` like `http://127.0.0.1:8080` (a missing scheme means http).
    pub fn new(base: &str, token: Option<String>) -> Self {
        let base = base.trim().trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build();
        Self {
            base,
            token: token.filter(|t| !t.is_empty()),
            agent,
        }
    }

    /// From the connection flags and the config file.
    pub fn from_args(config: &Path, conn: &Connection) -> Self {
        let file = ProductionConfig::load(config).ok();
        let base = conn.url.clone().unwrap_or_else(|| match &file {
            Some(c) => format!("http://{}", connectable(&c.production.http)),
            None => DEFAULT_URL.to_string(),
        });
        let token = conn
            .token
            .clone()
            .or_else(|| file.and_then(|c| c.production.api_token));
        Self::new(&base, token)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Call `method path` with query pairs and an optional JSON body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.request(method, &url);
        for (k, v) in query {
            request = request.query(k, v);
        }
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(b) => request.send_json(b),
            None if method == "POST" => request.send_json(json!({})),
            None => request.call(),
        };
        match result {
            Ok(response) => {
                let text = response.into_string().map_err(|e| CliError::Connect {
                    url: url.clone(),
                    message: format!("reading the answer: {e}"),
                })?;
                Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                let error = body
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status} from {method} {url}"));
                Err(CliError::Api {
                    status,
                    error,
                    body,
                })
            }
            Err(ureq::Error::Transport(t)) => Err(CliError::Connect {
                url: self.base.clone(),
                message: t.to_string(),
            }),
        }
    }
}

/// An address to connect to for one that binds: `0.0.0.0` → `127.0.0.1`.
fn connectable(http: &str) -> String {
    if let Some(port) = http.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = http.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        http.to_string()
    }
}

/// Percent-encode one path segment.
fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Run one subcommand and give the process's exit code.
pub fn run(config: &Path, command: ApiCommand) -> ExitCode {
    let conn = connection(&command).clone();
    let client = Client::from_args(config, &conn);
    match execute(&client, &command) {
        Ok(answer) => {
            if conn.json {
                println!("{}", pretty(&answer));
            } else {
                print!("{}", render(&command, &answer));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let (true, CliError::Api { body, .. }) = (conn.json, &e) {
                println!("{}", pretty(body));
            }
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn connection(command: &ApiCommand) -> &Connection {
    match command {
        ApiCommand::Status { conn }
        | ApiCommand::Test { conn, .. }
        | ApiCommand::Trace { conn, .. }
        | ApiCommand::Messages { conn, .. }
        | ApiCommand::Log { conn, .. }
        | ApiCommand::Update { conn }
        | ApiCommand::Start { conn }
        | ApiCommand::Stop { conn }
        | ApiCommand::Purge { conn, .. }
        | ApiCommand::Resend { conn, .. }
        | ApiCommand::Enable { conn, .. }
        | ApiCommand::Disable { conn, .. }
        | ApiCommand::Restart { conn, .. } => conn,
    }
}

/// The API call of a subcommand.
pub fn execute(client: &Client, command: &ApiCommand) -> Result<Value, CliError> {
    fn opt<T: ToString>(name: &'static str, v: &Option<T>) -> Option<(&'static str, String)> {
        v.as_ref().map(|v| (name, v.to_string()))
    }
    match command {
        ApiCommand::Status { .. } => client.call("GET", "/api/production", &[], None),
        ApiCommand::Test {
            item,
            type_name,
            body,
            ..
        } => {
            let text = match body.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| CliError::Usage(format!("--body @{file}: {e}")))?,
                None => body.clone(),
            };
            let body: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("--body is not JSON: {e}")))?;
            client.call(
                "POST",
                &format!("/api/items/{}/test", segment(item)),
                &[],
                Some(&json!({ "type": type_name, "body": body })),
            )
        }
        ApiCommand::Trace { session, .. } => {
            client.call("GET", &format!("/api/sessions/{session}/trace"), &[], None)
        }
        ApiCommand::Messages {
            session,
            source,
            target,
            type_name,
            status,
            limit,
            before,
            ..
        } => {
            let query: Vec<_> = [
                opt("session", session),
                opt("source", source),
                opt("target", target),
                opt("type", type_name),
                opt("status", status),
                opt("limit", limit),
                opt("before", before),
            ]
            .into_iter()
            .flatten()
            .collect();
            client.call("GET", "/api/messages", &query, None)
        }
        ApiCommand::Log {
            level, item, limit, ..
        } => {
            let query: Vec<_> = [opt("level", level), opt("item", item), opt("limit", limit)]
                .into_iter()
                .flatten()
                .collect();
            client.call("GET", "/api/log", &query, None)
        }
        ApiCommand::Update { .. } => client.call("POST", "/api/production/update", &[], None),
        ApiCommand::Start { .. } => client.call("POST", "/api/production/start", &[], None),
        ApiCommand::Stop { .. } => client.call("POST", "/api/production/stop", &[], None),
        ApiCommand::Resend {
            id: Some(id),
            session: None,
            source: None,
            target: None,
            type_name: None,
            status: None,
            ..
        } => client.call("POST", &format!("/api/messages/{id}/resend"), &[], None),
        ApiCommand::Resend { id: Some(_), .. } => Err(CliError::Usage(
            "give a message id or filters, not both".into(),
        )),
        ApiCommand::Resend {
            session,
            source,
            target,
            type_name,
            status,
            limit,
            ..
        } => client.call(
            "POST",
            "/api/messages/resend",
            &[],
            Some(&json!({
                "session": session, "source": source, "target": target,
                "type": type_name, "status": status, "limit": limit,
            })),
        ),
        ApiCommand::Purge {
            older_than_days, ..
        } => {
            if *older_than_days < 0 {
                return Err(CliError::Usage(format!(
                    "--older-than-days must be 0 or more, got {older_than_days}"
                )));
            }
            client.call(
                "POST",
                "/api/purge",
                &[],
                Some(&json!({ "older_than_days": older_than_days })),
            )
        }
        ApiCommand::Enable { item, .. } => item_call(client, item, "enable"),
        ApiCommand::Disable { item, .. } => item_call(client, item, "disable"),
        ApiCommand::Restart { item, .. } => item_call(client, item, "restart"),
    }
}

fn item_call(client: &Client, item: &str, action: &str) -> Result<Value, CliError> {
    client.call(
        "POST",
        &format!("/api/items/{}/{action}", segment(item)),
        &[],
        None,
    )
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A JSON field as display text ("" for null or missing).
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Columns padded to their widest cell; the last one is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<pad$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The human-readable form of an answer.
pub fn render(command: &ApiCommand, answer: &Value) -> String {
    match command {
        ApiCommand::Status { .. } => render_status(answer),
        ApiCommand::Test { .. } => {
            let reply = answer.get("reply").cloned().unwrap_or(Value::Null);
            format!(
                "session {} (request {}): reply {}\n{}\n",
                text(answer, "session_id"),
                text(answer, "request_id"),
                text(&reply, "type"),
                pretty(reply.get("body").unwrap_or(&Value::Null))
            )
        }
        ApiCommand::Trace { .. } => render_trace(answer),
        ApiCommand::Messages { .. } => {
            let rows: Vec<Vec<String>> = list(answer, "messages")
                .iter()
                .map(|m| {
                    let status = if m.get("is_error") == Some(&Value::Bool(true)) {
                        format!("{} (error)", text(m, "status"))
                    } else {
                        text(m, "status")
                    };
                    vec![
                        text(m, "id"),
                        text(m, "session_id"),
                        text(m, "created"),
                        text(m, "source"),
                        text(m, "target"),
                        text(m, "type"),
                        text(m, "kind"),
                        status,
                    ]
                })
                .collect();
            let mut out = table(
                &[
                    "ID", "SESSION", "CREATED", "SOURCE", "TARGET", "TYPE", "KIND", "STATUS",
                ],
                &rows,
            );
            if let Some(next) = answer.get("next_before").and_then(Value::as_i64) {
                let _ = writeln!(out, "(more: --before {next})");
            }
            out
        }
        ApiCommand::Log { .. } => {
            let rows: Vec<Vec<String>> = list(answer, "events")
                .iter()
                .map(|e| {
                    vec![
                        text(e, "time"),
                        text(e, "level"),
                        text(e, "item"),
                        text(e, "session_id"),
                        text(e, "text"),
                    ]
                })
                .collect();
            table(&["TIME", "LEVEL", "ITEM", "SESSION", "TEXT"], &rows)
        }
        ApiCommand::Update { .. } => {
            let mut out = format!("{}\n", text(answer, "message"));
            if let Some(report) = answer.get("report") {
                for key in ["restarted", "started", "stopped", "unchanged"] {
                    let names: Vec<String> = list(report, key)
                        .iter()
                        .map(|n| n.as_str().map_or_else(|| n.to_string(), str::to_string))
                        .collect();
                    if !names.is_empty() {
                        let _ = writeln!(out, "  {key:<10} {}", names.join(", "));
                    }
                }
            }
            out
        }
        ApiCommand::Start { .. } | ApiCommand::Stop { .. } => {
            format!("{}\n", text(answer, "message"))
        }
        ApiCommand::Purge { .. } => format!("deleted {} messages\n", text(answer, "deleted")),
        ApiCommand::Resend { id: Some(id), .. } => format!(
            "message {id} resent as message {} (session {})\n",
            text(answer, "id"),
            text(answer, "session_id")
        ),
        ApiCommand::Resend { .. } => format!(
            "resent {}: {} ok, {} failed\n",
            text(answer, "resent"),
            text(answer, "ok"),
            text(answer, "failed")
        ),
        ApiCommand::Enable { .. } | ApiCommand::Disable { .. } | ApiCommand::Restart { .. } => {
            let detail = text(answer, "state_detail");
            format!(
                "item {}: {}{}{}\n",
                text(answer, "name"),
                text(answer, "state"),
                if answer.get("enabled") == Some(&Value::Bool(false))
                    && text(answer, "state") != "disabled"
                {
                    " (disabled)"
                } else {
                    ""
                },
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            )
        }
    }
}

fn render_status(answer: &Value) -> String {
    let mut out = format!(
        "production {}: {}{}\n\n",
        text(answer, "name"),
        text(answer, "state"),
        if answer.get("testing_enabled") == Some(&Value::Bool(true)) {
            " (testing enabled)"
        } else {
            ""
        }
    );
    let rows: Vec<Vec<String>> = list(answer, "items")
        .iter()
        .map(|i| {
            let detail = text(i, "state_detail");
            let state = if detail.is_empty() {
                text(i, "state")
            } else {
                format!("{}: {detail}", text(i, "state"))
            };
            vec![
                text(i, "name"),
                text(i, "class"),
                text(i, "kind"),
                if i.get("enabled") == Some(&Value::Bool(true)) {
                    "yes".into()
                } else {
                    "no".into()
                },
                text(i, "pool_size"),
                text(i, "queued"),
                text(i, "processed"),
                text(i, "errors"),
                text(i, "restarts"),
                state,
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "NAME",
            "CLASS",
            "KIND",
            "ENABLED",
            "POOL",
            "QUEUED",
            "PROCESSED",
            "ERRORS",
            "RESTARTS",
            "STATE",
        ],
        &rows,
    ));
    out
}

/// One line per message, `#id  source -> target  Type  [status]`, replies as `<-`,
/// indented two spaces per call depth; then the session's events.
pub fn render_trace(answer: &Value) -> String {
    use std::collections::HashMap;
    let messages = list(answer, "messages");
    let mut depth_of: HashMap<i64, usize> = HashMap::new();
    let mut out = format!("session {}\n", text(answer, "session_id"));
    for m in messages {
        let id = m.get("id").and_then(Value::as_i64).unwrap_or_default();
        let parent = m.get("parent_id").and_then(Value::as_i64);
        let is_reply = text(m, "kind") == "reply";
        let depth = match (is_reply, parent) {
            // A reply sits at its request's depth.
            (true, Some(p)) => depth_of.get(&p).copied().unwrap_or(0),
            // A request sent while handling `p` is one deeper.
            (false, Some(p)) => depth_of.get(&p).map_or(0, |d| d + 1),
            (_, None) => 0,
        };
        depth_of.insert(id, depth);
        let arrow = if is_reply {
            format!("{} <- {}", text(m, "target"), text(m, "source"))
        } else {
            format!("{} -> {}", text(m, "source"), text(m, "target"))
        };
        let error = text(m, "error");
        let _ = writeln!(
            out,
            "{:indent$}#{id}  {arrow}  {}  [{}]{}",
            "",
            text(m, "type"),
            text(m, "status"),
            if error.is_empty() {
                String::new()
            } else {
                format!("  {error}")
            },
            indent = depth * 2
        );
    }
    let events = list(answer, "events");
    if !events.is_empty() {
        out.push_str("events:\n");
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    format!("  {}", text(e, "time")),
                    text(e, "level"),
                    text(e, "item"),
                    text(e, "text"),
                ]
            })
            .collect();
        let t = table(&["  TIME", "LEVEL", "ITEM", "TEXT"], &rows);
        out.push_str(&t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_are_indented_by_call_depth() {
        let answer = json!({
            "session_id": 1,
            "messages": [
                {"id": 1, "parent_id": null, "kind": "request", "source": "RestService", "target": "Router", "type": "FormationRequest", "status": "completed"},
                {"id": 2, "parent_id": 1, "kind": "request", "source": "Router", "target": "FileOperation", "type": "FormationRequest", "status": "completed"},
                {"id": 3, "parent_id": 2, "kind": "reply", "source": "FileOperation", "target": "Router", "type": "FormationStored", "status": "completed"},
                {"id": 4, "parent_id": 1, "kind": "reply", "source": "Router", "target": "RestService", "type": "ErrorReply", "status": "error", "error": "boom"}
            ],
            "events": [{"time": "t", "level": "info", "item": "Router", "text": "hello"}]
        });
        let text = render_trace(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "#1  RestService -> Router  FormationRequest  [completed]"
        );
        assert_eq!(
            lines[2],
            "  #2  Router -> FileOperation  FormationRequest  [completed]"
        );
        assert_eq!(
            lines[3],
            "  #3  Router <- FileOperation  FormationStored  [completed]"
        );
        assert_eq!(
            lines[4],
            "#4  RestService <- Router  ErrorReply  [error]  boom"
        );
        assert!(text.contains("hello"));
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "STATE"],
            &[
                vec!["Router".into(), "running".into()],
                vec!["IrisOperation".into(), "disabled".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME           STATE\nRouter         running\nIrisOperation  disabled\n"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            Client::new("127.0.0.1:9/", None).base(),
            "http://127.0.0.1:9"
        );
        assert_eq!(connectable("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(segment("My Item/1"), "My%20Item%2F1");
    }

    #[test]
    fn an_unreachable_url_is_exit_3_and_names_it() {
        // Port 9 (discard) on loopback: nothing listens there in the test environments.
        let client = Client::new("http://127.0.0.1:9", None);
        let e = client
            .call("GET", "/api/production", &[], None)
            .unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("http://127.0.0.1:9"), "{e}");
    }
}

//! The production's configuration: TOML, the user's interface.
//!
//! `[production]` holds what the whole production shares; each `[[item]]` has the common
//! fields (name, class, enabled, pool_size) and `[item.settings]`, parsed by the class's
//! own `Settings` struct when the production is validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProductionConfig {
    pub production: ProductionSection,
    /// The items, in file order (services, processes and operations alike).
    #[serde(default, rename = "item")]
    pub items: Vec<ItemConfig>,
}

/// `[production]`: what all items share.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProductionSection {
    /// Shown in logs, the API and the portal.
    pub name: String,
    /// Folder of the embedded database (`production.db`: message store, event log,
    /// local tables); relative paths are relative to the working directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Address of the HTTP server (REST service, management API, portal).
    #[serde(default = "default_http")]
    pub http: String,
    /// Whether the API may send test messages to items (the IRIS testing service).
    #[serde(default)]
    pub testing_enabled: bool,
    /// Bearer token required on `/api/*` and `/metrics` when set. Use `${ENV_VAR}`.
    #[serde(default)]
    pub api_token: Option<String>,
    /// Default timeout of a sync request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub default_timeout_ms: u64,
    /// Persist every message (the normal case). Off only for measuring the framework.
    #[serde(default = "default_true")]
    pub persist_messages: bool,
    /// Threads running the items' actors (default 1; the store writer and the HTTP
    /// server have their own).
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// Item that receives an `AlertRequest` for every alert (error reply, restart,
    /// failure timeout); alerts are always written to the event log at level alert.
    #[serde(default)]
    pub alert_target: Option<String>,
    /// Per item, at most one alert is raised in this many milliseconds; the others are
    /// counted in the next one.
    #[serde(default = "default_alert_grace_ms")]
    pub alert_grace_ms: u64,
    /// Files copied into a folder on the first start (when `data_dir` has no database
    /// yet), so a new production has input to show.
    #[serde(default)]
    pub seed: Vec<SeedFile>,
}

/// `[[production.seed]]`: a file copied on first start.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// The file to copy.
    pub file: PathBuf,
    /// The folder to copy it into (e.g. a CSV service's inbox).
    pub into: PathBuf,
}

/// One `[[item]]`: a named business host.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ItemConfig {
    /// The name other items target and the API uses.
    pub name: String,
    /// The registered implementation, e.g. `op-file`. Swapping it is a config change.
    pub class: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How many actor instances serve this item.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// A free text shown in the portal.
    #[serde(default)]
    pub comment: Option<String>,
    /// Class-specific settings; unknown keys are an error.
    #[serde(default)]
    pub settings: toml::Table,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_http() -> String {
    "127.0.0.1:8080".to_string()
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_alert_grace_ms() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}
fn default_pool_size() -> usize {
    1
}

/// A configuration mistake, naming the item and the key or value at fault.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("item #{index}: name is empty")]
    EmptyName { index: usize },
    #[error("item '{name}': duplicate item name (also item #{first})")]
    DuplicateName { name: String, first: usize },
    #[error("item '{item}': unknown class '{class}' (registered: {known})")]
    UnknownClass {
        item: String,
        class: String,
        known: String,
    },
    #[error("item '{item}': pool_size must be at least 1")]
    PoolSize { item: String },
    #[error("item '{item}' (class {class}): settings: {message}")]
    Setting {
        item: String,
        class: String,
        message: String,
    },
    #[error(
        "item '{item}': setting '{setting}' uses ${{{var}}}, which is not set in the environment"
    )]
    MissingEnv {
        item: String,
        setting: String,
        var: String,
    },
    #[error(
        "item '{item}': setting '{setting}' targets '{target}', but no item is named '{target}'"
    )]
    UnknownTarget {
        item: String,
        setting: String,
        target: String,
    },
    #[error("{0}")]
    ContractMismatch(Box<ContractMismatch>),
    #[error("[production] {0}")]
    Production(String),
}

/// A target that does not accept a message type sent to it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("item '{item}': setting '{setting}' sends {message_type} to '{target}' (class {target_class}), which does not accept {message_type} (accepts: {accepts})")]
pub struct ContractMismatch {
    pub item: String,
    pub setting: String,
    pub target: String,
    pub target_class: String,
    pub message_type: String,
    pub accepts: String,
}

impl ProductionConfig {
    /// Read and parse a config file (syntax and shape only; see `Registry::validate`).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut config: ProductionConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax {
                path: origin.to_string(),
                message: e.to_string().trim_end().to_string(),
            })?;
        if let Some(token) = &config.production.api_token {
            let token = expand_env(token).map_err(|var| {
                ConfigError::Production(format!("api_token uses ${{{var}}}, which is not set"))
            })?;
            config.production.api_token = if token.is_empty() { None } else { Some(token) };
        }
        Ok(config)
    }

    pub fn item(&self, name: &str) -> Option<&ItemConfig> {
        self.items.iter().find(|i| i.name == name)
    }
}

impl ItemConfig {
    /// The settings table with every `${VAR}` replaced from the environment.
    pub fn expanded_settings(&self) -> Result<toml::Table, ConfigError> {
        let mut table = self.settings.clone();
        for (key, value) in table.iter_mut() {
            expand_value(value).map_err(|var| ConfigError::MissingEnv {
                item: self.name.clone(),
                setting: key.clone(),
                var,
            })?;
        }
        Ok(table)
    }
}

fn expand_value(value: &mut toml::Value) -> Result<(), String> {
    match value {
        toml::Value::String(s) => {
            *s = expand_env(s)?;
        }
        toml::Value::Array(items) => {
            for v in items {
                expand_value(v)?;
            }
        }
        toml::Value::Table(t) => {
            for (_, v) in t.iter_mut() {
                expand_value(v)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replace `${VAR}` (and `${VAR:-default}`) with environment values; `$$` is a literal `$`.
/// Returns the name of the first variable that is unset and has no default.
pub fn expand_env(input: &str) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                out.push('$');
                rest = after;
                continue;
            };
            let spec = &inner[..end];
            let (var, default) = match spec.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (spec, None),
            };
            match (std::env::var(var), default) {
                (Ok(v), _) => out.push_str(&v),
                (Err(_), Some(d)) => out.push_str(d),
                (Err(_), None) => return Err(var.to_string()),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Setting names whose values are secrets: masked in the API, the portal and logs.
pub fn is_secret_setting(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains("token") || k == "url"
}

/// A settings map with secret values masked, and passwords inside URLs hidden.
pub fn mask_secrets(settings: &serde_json::Value) -> serde_json::Value {
    match settings {
        serde_json::Value::Object(map) => {
            let masked: serde_json::Map<String, serde_json::Value> = map
                .iter()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("url") {
                        match v.as_str() {
                            Some(s) => serde_json::Value::String(redact_url(s)),
                            None => v.clone(),
                        }
                    } else if is_secret_setting(k) && !v.is_null() {
                        serde_json::Value::String("***".into())
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect();
            serde_json::Value::Object(masked)
        }
        other => other.clone(),
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{}://{user}:***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Values shown for an item in the API (key → JSON value), secrets masked.
pub type SettingsView = BTreeMap<String, serde_json::Value>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion_substitutes_and_reports_the_missing_variable() {
        std::env::set_var("INTEROP_TEST_PW", "s3cret");
        assert_eq!(expand_env("a${INTEROP_TEST_PW}b").unwrap(), "as3cretb");
        assert_eq!(expand_env("${INTEROP_NOPE_X:-dflt}").unwrap(), "dflt");
        assert_eq!(expand_env("cost $$5").unwrap(), "cost $5");
        assert_eq!(
            expand_env("${INTEROP_NOPE_Y}").unwrap_err(),
            "INTEROP_NOPE_Y"
        );
    }

    #[test]
    fn urls_lose_their_password_when_shown() {
        assert_eq!(
            redact_url("postgres://demo:pw@db:5432/DemoData"),
            "postgres://demo:***@db:5432/DemoData"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let err = ProductionConfig::parse("[production]\nname = \n", "p.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("p.toml:"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn unknown_production_key_is_refused() {
        let err = ProductionConfig::parse("[production]\nname = \"x\"\nhtpp = \"a\"\n", "p.toml")
            .unwrap_err();
        assert!(err.to_string().contains("htpp"), "{err}");
    }
}

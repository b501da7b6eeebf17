//! The class registry: class name → how to build and run it, what it accepts, what it
//! sends. Every host crate has a `register(&mut Registry)`; the `production` crate calls
//! them all. `validate` checks a whole configuration against it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{ConfigError, ContractMismatch, ProductionConfig};
use crate::host::{
    BusinessOperation, BusinessProcess, BusinessService, HostKind, Settings, Target,
};
use crate::message::{Message, MessageTypes, RequestSet};
use crate::runtime::actors::{self, InstanceSpec, StartedInstance};

pub(crate) type StartFn = fn(InstanceSpec) -> StartedInstance;
type SettingsFn = fn(&toml::Table) -> Result<serde_json::Value, String>;

/// Extra HTTP routes a class serves on the production's HTTP server (e.g. `svc-rest`).
pub type HttpRoutes = fn(&mut actix_web::web::ServiceConfig);

/// Everything the production knows about one class.
pub struct ClassInfo {
    pub name: &'static str,
    pub kind: HostKind,
    /// Request type names it accepts (empty for services).
    pub accepts: Vec<&'static str>,
    /// Settings that name other items, with what is sent there.
    pub targets: Vec<Target>,
    pub http: Option<HttpRoutes>,
    /// Most instances one item of this class may run.
    pub max_pool_size: Option<usize>,
    settings: SettingsFn,
    pub(crate) start: StartFn,
}

impl ClassInfo {
    /// Parse settings into their effective values (defaults filled in), as JSON.
    pub fn parse_settings(&self, table: &toml::Table) -> Result<serde_json::Value, String> {
        (self.settings)(table)
    }
}

fn parse_settings<S: Settings>(table: &toml::Table) -> Result<serde_json::Value, String> {
    // The path tells which setting a type error is about ("sleep_ms: invalid type ...").
    let settings: S =
        serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let text = inner.message().trim().to_string();
            if path.is_empty() || path == "." || text.contains(&format!("`{path}`")) {
                text
            } else {
                format!("setting '{path}': {text}")
            }
        })?;
    let value = serde_json::to_value(&settings).map_err(|e| e.to_string())?;
    // Refuse keys the struct ignored, even where it forgot `deny_unknown_fields`.
    if let Some(known) = value.as_object() {
        if let Some(unknown) = table.keys().find(|k| !known.contains_key(*k)) {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown setting '{unknown}' (known: {})",
                names.join(", ")
            ));
        }
    }
    Ok(value)
}

/// Class name → [`ClassInfo`], plus every message type the classes use.
#[derive(Default)]
pub struct Registry {
    classes: BTreeMap<&'static str, Arc<ClassInfo>>,
    types: MessageTypes,
}

impl Registry {
    pub fn new() -> Self {
        let mut r = Self::default();
        r.message::<crate::message::Ack>()
            .message::<crate::message::AlertRequest>();
        r
    }

    fn insert(&mut self, info: ClassInfo) {
        if self.classes.contains_key(info.name) {
            // Two crates claiming one class name is a programming error worth stopping for.
            panic!("class '{}' is registered twice", info.name);
        }
        self.classes.insert(info.name, Arc::new(info));
    }

    /// Register a message type (replies, and anything not in a request set).
    pub fn message<M: Message>(&mut self) -> &mut Self {
        self.types.register::<M>();
        self
    }

    pub fn operation<H: BusinessOperation>(&mut self) -> &mut Self {
        H::Request::register_types(&mut self.types);
        self.insert(ClassInfo {
            name: H::CLASS,
            kind: HostKind::Operation,
            accepts: H::Request::type_names(),
            targets: H::targets(),
            http: None,
            max_pool_size: None,
            settings: parse_settings::<H::Settings>,
            start: actors::start_operation::<H>,
        });
        self
    }

    pub fn process<H: BusinessProcess>(&mut self) -> &mut Self {
        H::Request::register_types(&mut self.types);
        self.insert(ClassInfo {
            name: H::CLASS,
            kind: HostKind::Process,
            accepts: H::Request::type_names(),
            targets: H::targets(),
            http: None,
            max_pool_size: None,
            settings: parse_settings::<H::Settings>,
            start: actors::start_process::<H>,
        });
        self
    }

    pub fn service<H: BusinessService>(&mut self) -> &mut Self {
        self.service_with_routes::<H>(None)
    }

    /// A service that also serves HTTP routes on the production's server.
    pub fn service_with_routes<H: BusinessService>(
        &mut self,
        http: Option<HttpRoutes>,
    ) -> &mut Self {
        self.insert(ClassInfo {
            name: H::CLASS,
            kind: HostKind::Service,
            accepts: Vec::new(),
            targets: H::targets(),
            http,
            max_pool_size: H::MAX_POOL_SIZE,
            settings: parse_settings::<H::Settings>,
            start: actors::start_service::<H>,
        });
        self
    }

    pub fn class(&self, name: &str) -> Option<&Arc<ClassInfo>> {
        self.classes.get(name)
    }

    pub fn classes(&self) -> impl Iterator<Item = &Arc<ClassInfo>> {
        self.classes.values()
    }

    pub fn types(&self) -> &MessageTypes {
        &self.types
    }

    /// Check a whole configuration: classes, names, settings, targets and the message
    /// contracts between items. Returns every item's effective settings, or every error.
    pub fn validate(&self, config: &ProductionConfig) -> Result<Vec<ValidItem>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut valid = Vec::new();
        if config.production.name.trim().is_empty() {
            errors.push(ConfigError::Production("name is empty".into()));
        }
        if config.production.default_timeout_ms == 0 {
            errors.push(ConfigError::Production(
                "default_timeout_ms must be above 0".into(),
            ));
        }
        for (index, item) in config.items.iter().enumerate() {
            if item.name.trim().is_empty() {
                errors.push(ConfigError::EmptyName { index: index + 1 });
                continue;
            }
            if let Some(first) = seen.insert(&item.name, index + 1) {
                errors.push(ConfigError::DuplicateName {
                    name: item.name.clone(),
                    first,
                });
                continue;
            }
            if item.pool_size == 0 {
                errors.push(ConfigError::PoolSize {
                    item: item.name.clone(),
                });
            }
            let Some(class) = self.class(&item.class) else {
                errors.push(ConfigError::UnknownClass {
                    item: item.name.clone(),
                    class: item.class.clone(),
                    known: self.classes.keys().copied().collect::<Vec<_>>().join(", "),
                });
                continue;
            };
            if let Some(max) = class.max_pool_size.filter(|max| item.pool_size > *max) {
                errors.push(ConfigError::Setting {
                    item: item.name.clone(),
                    class: item.class.clone(),
                    message: format!(
                        "pool_size = {}: this class runs at most {max} instance(s) per item",
                        item.pool_size
                    ),
                });
                continue;
            }
            let table = match item.expanded_settings() {
                Ok(t) => t,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            // A class naming a target setting its Settings lack is a typo in the class:
            // say so instead of silently skipping the contract check.
            if let Ok(settings) = class.parse_settings(&table) {
                if let Some(t) = class
                    .targets
                    .iter()
                    .find(|t| settings.get(t.setting).is_none())
                {
                    errors.push(ConfigError::Setting {
                        item: item.name.clone(),
                        class: item.class.clone(),
                        message: format!(
                            "the class declares a target setting '{}' that its Settings do not have",
                            t.setting
                        ),
                    });
                    continue;
                }
            }
            match class.parse_settings(&table) {
                Ok(settings) => valid.push(ValidItem {
                    config: item.clone(),
                    class: class.clone(),
                    settings,
                }),
                Err(message) => errors.push(ConfigError::Setting {
                    item: item.name.clone(),
                    class: item.class.clone(),
                    message,
                }),
            }
        }
        if let Some(target) = &config.production.alert_target {
            match valid.iter().find(|v| &v.config.name == target) {
                None => errors.push(ConfigError::Production(format!(
                    "alert_target '{target}': no item has that name"
                ))),
                Some(v)
                    if !v
                        .class
                        .accepts
                        .contains(&crate::message::AlertRequest::TYPE_NAME) =>
                {
                    errors.push(ConfigError::Production(format!(
                        "alert_target '{target}' (class {}) does not accept AlertRequest",
                        v.class.name
                    )))
                }
                Some(_) => {}
            }
        }
        // Targets: each names an item that accepts what is sent to it.
        for item in &valid {
            for target in &item.class.targets {
                let Some(name) = item.settings.get(target.setting).and_then(|v| v.as_str()) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                let Some(to) = valid.iter().find(|v| v.config.name == name) else {
                    if !config.items.iter().any(|i| i.name == name) {
                        errors.push(ConfigError::UnknownTarget {
                            item: item.config.name.clone(),
                            setting: target.setting.to_string(),
                            target: name.to_string(),
                        });
                    }
                    continue;
                };
                for sent in &target.sends {
                    if !to.class.accepts.contains(sent) {
                        errors.push(ConfigError::ContractMismatch(Box::new(ContractMismatch {
                            item: item.config.name.clone(),
                            setting: target.setting.to_string(),
                            target: name.to_string(),
                            target_class: to.class.name.to_string(),
                            message_type: sent.to_string(),
                            accepts: if to.class.accepts.is_empty() {
                                "nothing".to_string()
                            } else {
                                to.class.accepts.join(", ")
                            },
                        })));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(valid)
        } else {
            Err(errors)
        }
    }
}

/// An item that passed validation, with its effective settings.
#[derive(Clone)]
pub struct ValidItem {
    pub config: crate::config::ItemConfig,
    pub class: Arc<ClassInfo>,
    pub settings: serde_json::Value,
}

impl ValidItem {
    /// The items this one targets, by setting.
    pub fn targets(&self) -> BTreeMap<String, String> {
        self.class
            .targets
            .iter()
            .filter_map(|t| {
                let v = self.settings.get(t.setting)?.as_str()?;
                (!v.is_empty()).then(|| (t.setting.to_string(), v.to_string()))
            })
            .collect()
    }
}

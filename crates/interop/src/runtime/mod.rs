//! The running production: items by name, routing of requests between them with
//! persist-before-deliver, supervision, and the operator's controls (start, stop,
//! enable, disable, restart, update).

pub(crate) mod actors;
mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::{oneshot, Notify};

pub use stats::{ItemStats, StatsSnapshot, BUCKETS};

use self::actors::{Deliver, InstanceSpec, Shutdown};
use crate::config::{mask_secrets, ConfigError, ProductionConfig};
use crate::error::{HostError, SendError, StoreError};
use crate::host::{BoxFuture, Call, CallReply, Dispatcher, HostContext, HostKind, ServiceContext};
use crate::message::AnyMessage;
use crate::registry::{ClassInfo, Registry, ValidItem};
use crate::store::{
    now, EmbeddedDb, Level, MessageRow, MessageStore, NewEvent, SqliteStore, Status, StatusUpdate,
};

/// How long `on_init` of one instance may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the supervisor checks that every running instance's actor is alive.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// How long a stop waits for sessions in flight before stopping items anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a production did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration:\n  {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Config(Vec<ConfigError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An item's state as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Running,
    Disabled,
    Stopped,
    Error,
}

/// A running instance of an item.
struct Instance {
    deliver: Recipient<Deliver>,
    shutdown: Recipient<Shutdown>,
}

/// One configured item, running or not.
pub struct Item {
    pub spec: ValidItem,
    enabled: AtomicBool,
    state: Mutex<(ItemState, Option<String>)>,
    instances: RwLock<Vec<Arc<Instance>>>,
    next: AtomicUsize,
    pub stats: Arc<ItemStats>,
}

impl Item {
    fn new(spec: ValidItem, stats: Arc<ItemStats>) -> Self {
        let enabled = spec.config.enabled;
        Self {
            spec,
            enabled: AtomicBool::new(enabled),
            state: Mutex::new((
                if enabled {
                    ItemState::Stopped
                } else {
                    ItemState::Disabled
                },
                None,
            )),
            instances: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            stats,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.config.name
    }

    pub fn class(&self) -> &ClassInfo {
        &self.spec.class
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> (ItemState, Option<String>) {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or((ItemState::Error, Some("state lock poisoned".into())))
    }

    fn set_state(&self, state: ItemState, detail: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            *s = (state, detail);
        }
    }

    fn pick(&self) -> Option<Arc<Instance>> {
        let instances = self.instances.read().ok()?;
        if instances.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % instances.len();
        Some(instances[i].clone())
    }

    /// The API's view of this item.
    pub fn view(&self) -> ItemView {
        let (state, detail) = self.state();
        let s = self.stats.snapshot();
        ItemView {
            name: self.name().to_string(),
            class: self.spec.class.name.to_string(),
            kind: self.spec.class.kind,
            enabled: self.enabled(),
            pool_size: self.spec.config.pool_size,
            state,
            state_detail: detail,
            queued: s.queued,
            processed: s.processed,
            errors: s.errors,
            restarts: s.restarts,
            alerts: s.alerts,
            accepts: self
                .spec
                .class
                .accepts
                .iter()
                .map(|s| s.to_string())
                .collect(),
            targets: self.spec.targets(),
            settings: mask_secrets(&self.spec.settings),
            comment: self.spec.config.comment.clone(),
        }
    }
}

/// An item as shown by the API and the portal.
#[derive(Clone, Debug, Serialize)]
pub struct ItemView {
    pub name: String,
    pub class: String,
    pub kind: HostKind,
    pub enabled: bool,
    pub pool_size: usize,
    pub state: ItemState,
    pub state_detail: Option<String>,
    pub queued: i64,
    pub processed: u64,
    pub errors: u64,
    pub restarts: u64,
    pub alerts: u64,
    pub accepts: Vec<String>,
    pub targets: std::collections::BTreeMap<String, String>,
    pub settings: serde_json::Value,
    pub comment: Option<String>,
}

/// What `update` changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpdateReport {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Items by name, and their names in config order.
type ItemTable = (HashMap<String, Arc<Item>>, Vec<String>);

struct Core {
    registry: Arc<Registry>,
    config: RwLock<ProductionConfig>,
    config_path: Option<PathBuf>,
    store: Arc<dyn MessageStore>,
    db: EmbeddedDb,
    /// Items by name, and their order in the config file.
    items: RwLock<ItemTable>,
    arbiters: Vec<Arbiter>,
    next_arbiter: AtomicUsize,
    running: AtomicBool,
    in_flight: AtomicI64,
    idle: Notify,
    default_timeout: Duration,
    /// Serialises start/stop/update/enable/disable.
    control: tokio::sync::Mutex<()>,
    /// The first message id of this run: sessions below it began before a restart.
    first_id_of_run: i64,
    /// Per item: when its last alert was raised, and how many were held back since.
    alerts: Mutex<HashMap<String, (Instant, u64)>>,
    link: Weak<Core>,
}

/// The link items hold back to the production; weak, so a stopped production is freed.
struct Link(Weak<Core>);

impl Dispatcher for Link {
    fn call(&self, call: Call) -> BoxFuture<CallReply> {
        match self.0.upgrade() {
            Some(core) => Box::pin(async move { core.route(call).await }),
            None => Box::pin(async {
                CallReply {
                    session_id: 0,
                    request_id: 0,
                    result: Err(SendError::ShuttingDown),
                }
            }),
        }
    }

    fn event(&self, level: Level, item: &str, session_id: Option<i64>, text: &str) {
        if let Some(core) = self.0.upgrade() {
            core.event(level, Some(item), session_id, text);
        }
    }

    fn item_enabled(&self, item: &str) -> Option<bool> {
        self.0.upgrade()?.item(item).map(|i| i.enabled())
    }

    fn alert(&self, item: &str, session_id: Option<i64>, text: &str) {
        if let Some(core) = self.0.upgrade() {
            core.alert(item, session_id, text);
        }
    }

    fn embedded_db(&self) -> Option<EmbeddedDb> {
        self.0.upgrade().map(|c| c.db.clone())
    }

    fn replayed(&self, session_id: i64) -> bool {
        self.0
            .upgrade()
            .is_some_and(|c| session_id < c.first_id_of_run)
    }
}

/// Counts a request in flight for the drain on stop.
struct InFlight<'a>(&'a Core);

impl<'a> InFlight<'a> {
    fn new(core: &'a Core) -> Self {
        core.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(core)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Core {
    fn item(&self, name: &str) -> Option<Arc<Item>> {
        self.items.read().ok()?.0.get(name).cloned()
    }

    fn event(&self, level: Level, item: Option<&str>, session_id: Option<i64>, text: &str) {
        let who = item.unwrap_or("production");
        log::log!(level.to_log(), "{who}: {text}");
        self.store.event(NewEvent {
            time: now(),
            level: level.as_str().to_string(),
            item: item.map(str::to_string),
            session_id,
            text: text.to_string(),
        });
    }

    /// Raise an alert about `item`: at most one per grace period per item, the others
    /// counted into the next.
    fn alert(&self, item: &str, session_id: Option<i64>, text: &str) {
        let (grace, target) = match self.config.read() {
            Ok(c) => (
                Duration::from_millis(c.production.alert_grace_ms),
                c.production.alert_target.clone(),
            ),
            Err(_) => (Duration::from_secs(10), None),
        };
        let suppressed = {
            let Ok(mut alerts) = self.alerts.lock() else {
                return;
            };
            let now = Instant::now();
            match alerts.get_mut(item) {
                Some((last, held)) if now.duration_since(*last) < grace => {
                    *held += 1;
                    return;
                }
                Some((last, held)) => {
                    *last = now;
                    std::mem::take(held)
                }
                None => {
                    alerts.insert(item.to_string(), (now, 0));
                    0
                }
            }
        };
        if let Some(i) = self.item(item) {
            i.stats.alerted();
        }
        let shown = if suppressed > 0 {
            format!("{text} (and {suppressed} more alerts held back)")
        } else {
            text.to_string()
        };
        self.event(Level::Alert, Some(item), session_id, &shown);
        // The alert target's own failures are not sent to it again.
        let Some(target) = target.filter(|t| t != item) else {
            return;
        };
        let alert = crate::message::AlertRequest {
            source: item.to_string(),
            text: text.to_string(),
            session_id,
            time: now(),
            suppressed,
        };
        let Ok(message) = AnyMessage::new(&alert) else {
            return;
        };
        let link = self.link.clone();
        let source = Arc::from(item);
        actix_rt::spawn(async move {
            if let Some(core) = link.upgrade() {
                let _ = core
                    .route(Call {
                        source,
                        target,
                        session_id: None,
                        parent_id: None,
                        message,
                        timeout: None,
                        key: None,
                    })
                    .await;
            }
        });
    }

    fn dispatcher(&self) -> Arc<dyn Dispatcher> {
        Arc::new(Link(self.link.clone()))
    }

    /// Send a request: persist it, deliver it, persist the reply.
    async fn route(&self, call: Call) -> CallReply {
        let id = self.store.next_id();
        let session_id = call.session_id.unwrap_or(id);
        let reply = |result| CallReply {
            session_id,
            request_id: id,
            result,
        };
        let Some(item) = self.item(&call.target) else {
            self.event(
                Level::Error,
                Some(&call.source),
                call.session_id,
                &format!("request to unknown item '{}'", call.target),
            );
            return reply(Err(SendError::UnknownTarget(call.target)));
        };
        if !item.enabled() {
            return reply(Err(SendError::TargetDisabled(call.target)));
        }
        let _in_flight = InFlight::new(self);
        let keyed = call.key.is_some();
        let row = MessageRow {
            id,
            session_id,
            parent_id: call.parent_id,
            source: call.source.to_string(),
            target: call.target.clone(),
            type_name: call.message.type_name().to_string(),
            kind: "request".into(),
            status: Status::Queued.as_str().into(),
            is_error: false,
            error_text: None,
            created: now(),
            processed: None,
            body: call.message.json().to_string(),
            session_key: call.key,
        };
        // A session's first request is durable before delivery: it is what a restart
        // re-delivers. The requests a process sends on are not waited for: recovery re-runs
        // the whole session from its first request (children are discarded), and the
        // writer commits in order, so whatever the target writes to the store commits
        // after its request. Not waiting saves a commit round trip per hop.
        if call.parent_id.is_none() || keyed {
            match self.store.insert(row).await {
                Ok(()) => {}
                Err(StoreError::Duplicate(key)) => return reply(Err(SendError::Duplicate(key))),
                Err(e) => return reply(Err(SendError::Store(e.to_string()))),
            }
        } else {
            self.store.insert_in_flight(row);
        }
        let timeout = call.timeout.unwrap_or(self.default_timeout);
        let result = self
            .deliver(&item, &call.source, id, session_id, call.message, timeout)
            .await;
        reply(result)
    }

    /// Deliver a stored request to its target and store the outcome.
    async fn deliver(
        &self,
        item: &Arc<Item>,
        source: &str,
        id: i64,
        session_id: i64,
        message: AnyMessage,
        timeout: Duration,
    ) -> Result<AnyMessage, SendError> {
        let target = item.name().to_string();
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let mut deliver = Deliver {
            request_id: id,
            session_id,
            message,
            reply_to: tx,
        };
        item.stats.enqueued();
        let outcome = tokio::time::timeout(timeout, async {
            // An instance that is being replaced gives the request back: route it to
            // the item's current instances.
            for _ in 0..50 {
                let current = self.item(&target).unwrap_or_else(|| item.clone());
                let Some(instance) = current.pick() else {
                    break;
                };
                match instance.deliver.send(deliver).await {
                    Ok(Ok(())) => {
                        return rx.await.unwrap_or_else(|_| {
                            Err(HostError::new(format!(
                                "item '{target}' stopped before replying"
                            )))
                        })
                    }
                    Ok(Err(back)) => {
                        deliver = back;
                        actix_rt::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => {
                        return Err(HostError::new(format!("item '{target}' is not running")))
                    }
                }
            }
            Err(HostError::new(format!("item '{target}' is not running")))
        })
        .await;
        let took = started.elapsed();
        let processed = now();
        match outcome {
            Err(_) => {
                item.stats.dequeued();
                item.stats.completed(took, false);
                let text = format!("no reply within {} ms", timeout.as_millis());
                self.store.update_detached(StatusUpdate {
                    id,
                    status: Status::Error,
                    error_text: Some(text),
                    processed: Some(processed),
                });
                Err(SendError::Timeout {
                    target,
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
            Ok(Ok(reply)) => {
                item.stats.completed(took, true);
                let row = MessageRow {
                    id: self.store.next_id(),
                    session_id,
                    parent_id: Some(id),
                    source: target.clone(),
                    target: source.to_string(),
                    type_name: reply.type_name().to_string(),
                    kind: "reply".into(),
                    status: Status::Completed.as_str().into(),
                    is_error: false,
                    error_text: None,
                    created: processed.clone(),
                    processed: Some(processed.clone()),
                    body: reply.json().to_string(),
                    session_key: None,
                };
                let update = StatusUpdate {
                    id,
                    status: Status::Completed,
                    error_text: None,
                    processed: Some(processed),
                };
                // Not awaited: the request was durable before delivery, so a reply lost in
                // a crash means a re-delivery, which operations take idempotently.
                self.store.insert_and_update_detached(row, update);
                Ok(reply)
            }
            Ok(Err(error)) => {
                item.stats.completed(took, false);
                self.event(
                    Level::Error,
                    Some(&target),
                    Some(session_id),
                    &format!("message {id} failed: {}", error.message),
                );
                self.alert(
                    &target,
                    Some(session_id),
                    &format!("error reply to message {id}: {}", error.message),
                );
                let row = MessageRow {
                    id: self.store.next_id(),
                    session_id,
                    parent_id: Some(id),
                    source: target.clone(),
                    target: source.to_string(),
                    type_name: "ErrorReply".into(),
                    kind: "reply".into(),
                    status: Status::Error.as_str().into(),
                    is_error: true,
                    error_text: Some(error.message.clone()),
                    created: processed.clone(),
                    processed: Some(processed.clone()),
                    body: serde_json::json!({ "error": error.message }).to_string(),
                    session_key: None,
                };
                let update = StatusUpdate {
                    id,
                    status: Status::Error,
                    error_text: Some(error.message.clone()),
                    processed: Some(processed),
                };
                self.store.insert_and_update_detached(row, update);
                Err(SendError::ErrorReply {
                    target,
                    message: error.message,
                })
            }
        }
    }

    fn arbiter(&self) -> ArbiterHandle {
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters[i].handle()
    }

    /// Start every instance of an item and wait for their `on_init`.
    async fn start_item(&self, item: &Arc<Item>) {
        if !item.enabled() {
            item.set_state(ItemState::Disabled, None);
            return;
        }
        let mut started = Vec::new();
        let mut failure = None;
        for _ in 0..item.spec.config.pool_size {
            let spec = InstanceSpec {
                item: Arc::from(item.name()),
                settings: item.spec.settings.clone(),
                dispatcher: self.dispatcher(),
                store: self.store.clone(),
                stats: item.stats.clone(),
                arbiter: self.arbiter(),
            };
            let instance = (item.spec.class.start)(spec);
            let ready = tokio::time::timeout(INIT_TIMEOUT, instance.ready).await;
            let ready = match ready {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(HostError::new("instance stopped during on_init")),
                Err(_) => Err(HostError::new(format!(
                    "on_init took longer than {} s",
                    INIT_TIMEOUT.as_secs()
                ))),
            };
            match ready {
                Ok(()) => started.push(Arc::new(Instance {
                    deliver: instance.deliver,
                    shutdown: instance.shutdown,
                })),
                Err(e) => {
                    failure = Some(e.message);
                    break;
                }
            }
        }
        match failure {
            None => {
                let n = started.len();
                if let Ok(mut slot) = item.instances.write() {
                    *slot = started;
                }
                item.set_state(ItemState::Running, None);
                self.event(
                    Level::Info,
                    Some(item.name()),
                    None,
                    &format!("started ({} x {})", n, item.spec.class.name),
                );
            }
            Some(message) => {
                for i in started {
                    let _ = i.shutdown.send(Shutdown).await;
                }
                item.set_state(ItemState::Error, Some(message.clone()));
                self.event(
                    Level::Error,
                    Some(item.name()),
                    None,
                    &format!("failed to start: {message}"),
                );
            }
        }
    }

    /// Stop an item's instances: each finishes what it was given, then tears down.
    async fn stop_item(&self, item: &Arc<Item>, state: ItemState) {
        let instances = match item.instances.write() {
            Ok(mut slot) => std::mem::take(&mut *slot),
            Err(_) => Vec::new(),
        };
        let had = !instances.is_empty();
        for i in instances {
            let _ = i.shutdown.send(Shutdown).await;
        }
        item.set_state(state, None);
        if had {
            self.event(Level::Info, Some(item.name()), None, "stopped");
        }
    }

    fn items_in_order(&self) -> Vec<Arc<Item>> {
        match self.items.read() {
            Ok(items) => items
                .1
                .iter()
                .filter_map(|n| items.0.get(n).cloned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn by_kind(&self, kind: HostKind) -> Vec<Arc<Item>> {
        self.items_in_order()
            .into_iter()
            .filter(|i| i.spec.class.kind == kind)
            .collect()
    }

    async fn start_all(&self) {
        // Targets first, so the first service input finds them ready.
        for kind in [HostKind::Operation, HostKind::Process, HostKind::Service] {
            for item in self.by_kind(kind) {
                self.start_item(&item).await;
            }
        }
        self.running.store(true, Ordering::SeqCst);
    }

    async fn stop_all(&self) {
        self.running.store(false, Ordering::SeqCst);
        for item in self.by_kind(HostKind::Service) {
            self.stop_item(&item, ItemState::Stopped).await;
        }
        self.drain(DRAIN_TIMEOUT).await;
        for kind in [HostKind::Process, HostKind::Operation] {
            for item in self.by_kind(kind) {
                let state = if item.enabled() {
                    ItemState::Stopped
                } else {
                    ItemState::Disabled
                };
                self.stop_item(&item, state).await;
            }
        }
        let _ = self.store.flush().await;
    }

    /// Wait until no request is in flight, at most `limit`.
    async fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) <= 0 {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.event(
                    Level::Warn,
                    None,
                    None,
                    &format!(
                        "stopping with {} requests still in flight",
                        self.in_flight.load(Ordering::SeqCst)
                    ),
                );
                return;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// Re-deliver the requests a previous run stored but never completed. A request
    /// sent by a process is re-sent when its process's own request runs again, so only
    /// the first request of each session is re-delivered; the others are discarded.
    async fn recover(&self) -> Result<(), StoreError> {
        let unfinished = {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.unfinished_requests())
                .await
                .map_err(|e| StoreError::Query(e.to_string()))??
        };
        if unfinished.is_empty() {
            return Ok(());
        }
        let roots: Vec<MessageRow> = unfinished
            .iter()
            .filter(|r| r.parent_id.is_none())
            .cloned()
            .collect();
        for row in unfinished.iter().filter(|r| r.parent_id.is_some()) {
            self.store.update_detached(StatusUpdate {
                id: row.id,
                status: Status::Discarded,
                error_text: Some("superseded: its session was re-delivered after a restart".into()),
                processed: Some(now()),
            });
        }
        self.event(
            Level::Info,
            None,
            None,
            &format!(
                "recovery: re-delivering {} unfinished requests",
                roots.len()
            ),
        );
        let mut pending = futures_util::stream::FuturesUnordered::new();
        for row in roots {
            let Some(item) = self.item(&row.target) else {
                self.store.update_detached(StatusUpdate {
                    id: row.id,
                    status: Status::Error,
                    error_text: Some(format!("no item named '{}' after restart", row.target)),
                    processed: Some(now()),
                });
                continue;
            };
            let message = AnyMessage::from_json(row.type_name.clone(), row.body.clone());
            let source = row.source.clone();
            let link = self.link.clone();
            pending.push(async move {
                if let Some(core) = link.upgrade() {
                    let _guard = InFlight::new(&core);
                    let _ = core
                        .deliver(
                            &item,
                            &source,
                            row.id,
                            row.session_id,
                            message,
                            core.default_timeout,
                        )
                        .await;
                }
            });
            // Bounded: a large backlog is re-delivered a window at a time.
            if pending.len() >= 512 {
                use futures_util::StreamExt;
                pending.next().await;
            }
        }
        use futures_util::StreamExt;
        while pending.next().await.is_some() {}
        Ok(())
    }
}

/// A running production: a cheap handle to clone into HTTP handlers and tests.
#[derive(Clone)]
pub struct Production {
    core: Arc<Core>,
}

impl Production {
    /// Validate `config`, open the embedded database, recover unfinished requests and
    /// start every enabled item. Must be called inside an Actix system.
    pub async fn start(
        config: ProductionConfig,
        registry: Arc<Registry>,
        config_path: Option<PathBuf>,
    ) -> Result<Self, StartError> {
        let valid = registry.validate(&config).map_err(StartError::Config)?;
        let db_path = config.production.data_dir.join("production.db");
        let first_start = !db_path.exists();
        let db = {
            let path = db_path.clone();
            tokio::task::spawn_blocking(move || EmbeddedDb::open(&path))
                .await
                .map_err(|e| StoreError::Open {
                    path: db_path.display().to_string(),
                    message: e.to_string(),
                })??
        };
        let store: Arc<dyn MessageStore> = Arc::new(SqliteStore::new(
            db.clone(),
            config.production.persist_messages,
        )?);
        let first_id_of_run = store.peek_id();
        let threads = config.production.worker_threads.unwrap_or(1).clamp(1, 64);
        let arbiters = (0..threads).map(|_| Arbiter::new()).collect();
        let mut map = HashMap::new();
        let mut order = Vec::new();
        for v in valid {
            order.push(v.config.name.clone());
            map.insert(
                v.config.name.clone(),
                Arc::new(Item::new(v, Arc::new(ItemStats::default()))),
            );
        }
        let core = Arc::new_cyclic(|link| Core {
            registry,
            default_timeout: Duration::from_millis(config.production.default_timeout_ms),
            config: RwLock::new(config),
            config_path,
            store,
            db,
            items: RwLock::new((map, order)),
            arbiters,
            next_arbiter: AtomicUsize::new(0),
            running: AtomicBool::new(false),
            in_flight: AtomicI64::new(0),
            idle: Notify::new(),
            control: tokio::sync::Mutex::new(()),
            first_id_of_run,
            alerts: Mutex::new(HashMap::new()),
            link: link.clone(),
        });
        let production = Production { core };
        production
            .core
            .event(Level::Info, None, None, "production starting");
        if first_start {
            production.seed();
        }
        {
            let _control = production.core.control.lock().await;
            for kind in [HostKind::Operation, HostKind::Process] {
                for item in production.core.by_kind(kind) {
                    production.core.start_item(&item).await;
                }
            }
            production.core.recover().await?;
            for item in production.core.by_kind(HostKind::Service) {
                production.core.start_item(&item).await;
            }
            production.core.running.store(true, Ordering::SeqCst);
        }
        production
            .core
            .event(Level::Info, None, None, "production started");
        production.supervise();
        Ok(production)
    }

    /// Supervision beyond the panics the workers catch: an item whose instance's actor
    /// is gone (its thread died, it stopped on its own) is rebuilt from its settings.
    fn supervise(&self) {
        let link = Arc::downgrade(&self.core);
        actix_rt::spawn(async move {
            loop {
                actix_rt::time::sleep(HEALTH_INTERVAL).await;
                let Some(core) = link.upgrade() else {
                    break;
                };
                if !core.running.load(Ordering::SeqCst) {
                    continue;
                }
                for item in core.items_in_order() {
                    let dead = || {
                        item.state().0 == ItemState::Running
                            && item
                                .instances
                                .read()
                                .map(|v| v.iter().any(|i| !i.deliver.connected()))
                                .unwrap_or(false)
                    };
                    if !dead() {
                        continue;
                    }
                    let _control = core.control.lock().await;
                    if !dead() {
                        continue;
                    }
                    item.stats.restarted();
                    core.alert(
                        item.name(),
                        None,
                        "an instance stopped unexpectedly; restarting the item",
                    );
                    core.stop_item(&item, ItemState::Stopped).await;
                    core.start_item(&item).await;
                }
            }
        });
    }

    /// Stop the actor of an item's first instance behind the production's back, as a
    /// crash would: for testing the supervisor.
    #[doc(hidden)]
    pub async fn crash_instance(&self, name: &str) {
        let instance = self
            .core
            .item(name)
            .and_then(|i| i.instances.read().ok().and_then(|v| v.first().cloned()));
        if let Some(i) = instance {
            let _ = i.shutdown.send(Shutdown).await;
        }
    }

    /// Copy the `[[production.seed]]` files (first start only).
    fn seed(&self) {
        for seed in self.config().production.seed {
            let name = seed.file.file_name().map(|n| n.to_owned());
            let result = name
                .ok_or_else(|| std::io::Error::other("not a file name"))
                .and_then(|name| {
                    std::fs::create_dir_all(&seed.into)?;
                    std::fs::copy(&seed.file, seed.into.join(name))
                });
            match result {
                Ok(_) => self.core.event(
                    Level::Info,
                    None,
                    None,
                    &format!(
                        "first start: copied {} into {}",
                        seed.file.display(),
                        seed.into.display()
                    ),
                ),
                Err(e) => self.core.event(
                    Level::Warn,
                    None,
                    None,
                    &format!("first start: cannot copy {}: {e}", seed.file.display()),
                ),
            }
        }
    }

    /// Load a config file and start it.
    pub async fn start_file(path: &Path, registry: Arc<Registry>) -> Result<Self, StartError> {
        let config = ProductionConfig::load(path).map_err(|e| StartError::Config(vec![e]))?;
        Self::start(config, registry, Some(path.to_path_buf())).await
    }

    pub fn name(&self) -> String {
        self.core
            .config
            .read()
            .map(|c| c.production.name.clone())
            .unwrap_or_default()
    }

    pub fn config(&self) -> ProductionConfig {
        match self.core.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.core.registry
    }

    pub fn store(&self) -> &Arc<dyn MessageStore> {
        &self.core.store
    }

    pub fn embedded_db(&self) -> &EmbeddedDb {
        &self.core.db
    }

    pub fn is_running(&self) -> bool {
        self.core.running.load(Ordering::SeqCst)
    }

    pub fn item(&self, name: &str) -> Option<Arc<Item>> {
        self.core.item(name)
    }

    pub fn items(&self) -> Vec<Arc<Item>> {
        self.core.items_in_order()
    }

    /// Write an event-log entry.
    pub fn event(&self, level: Level, item: Option<&str>, session_id: Option<i64>, text: &str) {
        self.core.event(level, item, session_id, text);
    }

    /// A context to send requests as the service item `name` (HTTP-driven services).
    pub fn service_context(&self, name: &str) -> Result<ServiceContext, SendError> {
        let item = self
            .core
            .item(name)
            .ok_or_else(|| SendError::UnknownTarget(name.to_string()))?;
        if !item.enabled() {
            return Err(SendError::TargetDisabled(name.to_string()));
        }
        if item.state().0 != ItemState::Running {
            return Err(SendError::TargetStopped(name.to_string()));
        }
        Ok(ServiceContext::new(HostContext::new(
            name,
            self.core.dispatcher(),
        )))
    }

    /// The first running item of a class (how HTTP routes find their service item).
    pub fn running_item_of_class(&self, class: &str) -> Option<Arc<Item>> {
        self.core
            .items_in_order()
            .into_iter()
            .find(|i| i.spec.class.name == class && i.state().0 == ItemState::Running)
    }

    /// Send a message to an item as a sync request in a new session, from `source`
    /// (the testing service, resend).
    pub async fn send(&self, source: &str, target: &str, message: AnyMessage) -> CallReply {
        self.core
            .route(Call {
                source: Arc::from(source),
                target: target.to_string(),
                session_id: None,
                parent_id: None,
                message,
                timeout: None,
                key: None,
            })
            .await
    }

    /// Stop every item: services first, then wait for sessions in flight, then
    /// processes and operations (each calls `on_tear_down`).
    pub async fn stop(&self) {
        let _control = self.core.control.lock().await;
        if !self.core.running.load(Ordering::SeqCst) {
            return;
        }
        self.core
            .event(Level::Info, None, None, "production stopping");
        self.core.stop_all().await;
        self.core
            .event(Level::Info, None, None, "production stopped");
        let _ = self.core.store.flush().await;
    }

    /// Start again after `stop`.
    pub async fn start_again(&self) {
        let _control = self.core.control.lock().await;
        if self.core.running.load(Ordering::SeqCst) {
            return;
        }
        self.core.start_all().await;
        self.core
            .event(Level::Info, None, None, "production started");
    }

    /// Enable and start an item.
    pub async fn enable(&self, name: &str) -> Result<(), SendError> {
        let _control = self.core.control.lock().await;
        let item = self
            .core
            .item(name)
            .ok_or_else(|| SendError::UnknownTarget(name.to_string()))?;
        if item.enabled() && item.state().0 == ItemState::Running {
            return Ok(());
        }
        item.enabled.store(true, Ordering::SeqCst);
        self.core.event(Level::Info, Some(name), None, "enabled");
        if self.is_running() {
            self.core.start_item(&item).await;
        }
        Ok(())
    }

    /// Stop an item and keep it stopped: requests to it are refused as disabled.
    pub async fn disable(&self, name: &str) -> Result<(), SendError> {
        let _control = self.core.control.lock().await;
        let item = self
            .core
            .item(name)
            .ok_or_else(|| SendError::UnknownTarget(name.to_string()))?;
        item.enabled.store(false, Ordering::SeqCst);
        self.core.stop_item(&item, ItemState::Disabled).await;
        self.core.event(Level::Info, Some(name), None, "disabled");
        Ok(())
    }

    /// Stop and start an item's instances (tear down, then build from settings).
    pub async fn restart(&self, name: &str) -> Result<(), SendError> {
        let _control = self.core.control.lock().await;
        let item = self
            .core
            .item(name)
            .ok_or_else(|| SendError::UnknownTarget(name.to_string()))?;
        if !item.enabled() {
            return Err(SendError::TargetDisabled(name.to_string()));
        }
        self.core.stop_item(&item, ItemState::Stopped).await;
        self.core.start_item(&item).await;
        Ok(())
    }

    /// Re-read the config file and apply it: restart only the items whose class,
    /// settings, pool size or enabled flag changed, start new ones, stop removed ones.
    /// A changed item's new instances start before the old ones stop, and the old ones
    /// finish what they were given, so no accepted request is lost.
    pub async fn update(&self) -> Result<UpdateReport, Vec<ConfigError>> {
        let path = self.core.config_path.clone().ok_or_else(|| {
            vec![ConfigError::Production(
                "this production was not started from a file".into(),
            )]
        })?;
        let config = ProductionConfig::load(&path).map_err(|e| vec![e])?;
        self.apply(config).await
    }

    /// Apply a new configuration (see [`Production::update`]).
    pub async fn apply(&self, config: ProductionConfig) -> Result<UpdateReport, Vec<ConfigError>> {
        let valid = self.core.registry.validate(&config)?;
        let _control = self.core.control.lock().await;
        let mut report = UpdateReport::default();
        let old_items = self.core.items_in_order();
        let mut new_order = Vec::new();
        let mut kept = HashMap::new();
        let mut to_start = Vec::new();
        let mut to_stop = Vec::new();
        for v in valid {
            new_order.push(v.config.name.clone());
            match old_items.iter().find(|o| o.name() == v.config.name) {
                Some(old) if old.spec.config == v.config && old.spec.settings == v.settings => {
                    report.unchanged.push(v.config.name.clone());
                    kept.insert(v.config.name.clone(), old.clone());
                }
                Some(old) => {
                    report.restarted.push(v.config.name.clone());
                    let item = Arc::new(Item::new(v, old.stats.clone()));
                    kept.insert(item.name().to_string(), item.clone());
                    to_start.push(item);
                    to_stop.push(old.clone());
                }
                None => {
                    report.started.push(v.config.name.clone());
                    let item = Arc::new(Item::new(v, Arc::new(ItemStats::default())));
                    kept.insert(item.name().to_string(), item.clone());
                    to_start.push(item);
                }
            }
        }
        for old in &old_items {
            if !kept.contains_key(old.name()) {
                report.stopped.push(old.name().to_string());
                to_stop.push(old.clone());
            }
        }
        // Build the new instances before anyone can route to them.
        if self.is_running() {
            to_start.sort_by_key(|i| match i.spec.class.kind {
                HostKind::Operation => 0,
                HostKind::Process => 1,
                HostKind::Service => 2,
            });
            for item in &to_start {
                self.core.start_item(item).await;
            }
        }
        if let Ok(mut items) = self.core.items.write() {
            *items = (kept, new_order);
        }
        for old in to_stop {
            self.core.stop_item(&old, ItemState::Stopped).await;
        }
        if let Ok(mut c) = self.core.config.write() {
            *c = config;
        }
        self.core.event(
            Level::Info,
            None,
            None,
            &format!(
                "update: {} restarted, {} started, {} stopped, {} unchanged",
                report.restarted.len(),
                report.started.len(),
                report.stopped.len(),
                report.unchanged.len()
            ),
        );
        Ok(report)
    }

    /// Sessions in flight right now.
    pub fn in_flight(&self) -> i64 {
        self.core.in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}

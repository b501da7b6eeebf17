//! The business host model: services take data in, processes hold the logic,
//! operations reach the outside. A host is a plain struct implementing one of the three
//! traits; the runtime runs each instance inside an Actix actor.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{HostError, SendError};
use crate::message::{AnyMessage, Message, RequestSet};
use crate::store::{EmbeddedDb, Level};

/// What a class's `Settings` must be: a serde struct. Use `#[serde(deny_unknown_fields)]`
/// and give optional fields a `#[serde(default)]`; a field without default is required.
pub trait Settings: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Settings for T {}

/// Which of the three kinds a class is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    Service,
    Process,
    Operation,
}

impl HostKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HostKind::Service => "service",
            HostKind::Process => "process",
            HostKind::Operation => "operation",
        }
    }
}

/// A setting that names another item, and the message types sent to it: `validate`
/// refuses a wiring whose target does not accept one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub setting: &'static str,
    pub sends: Vec<&'static str>,
}

impl Target {
    /// `Target::sends::<FormationRequest>("file_target")`.
    pub fn sends<M: Message>(setting: &'static str) -> Self {
        Self {
            setting,
            sends: vec![M::TYPE_NAME],
        }
    }

    /// Another type sent through the same setting.
    pub fn and<M: Message>(mut self) -> Self {
        self.sends.push(M::TYPE_NAME);
        self
    }
}

/// Result of a handler.
pub type HostResult<T> = Result<T, HostError>;

/// Boxed future used at the framework's dynamic edges.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One request on its way from an item to another.
#[derive(Clone, Debug)]
pub struct Call {
    pub source: Arc<str>,
    pub target: String,
    /// `None` starts a new session (a service's input).
    pub session_id: Option<i64>,
    /// The request being handled when this one was sent.
    pub parent_id: Option<i64>,
    pub message: AnyMessage,
    /// Per-call timeout; `None` uses the production's default.
    pub timeout: Option<Duration>,
    /// Idempotency key of a new session (see `ServiceContext::send_request_keyed`).
    pub key: Option<String>,
}

/// A request's reply together with the ids it was stored under.
#[derive(Clone, Debug)]
pub struct CallReply {
    pub session_id: i64,
    pub request_id: i64,
    pub result: Result<AnyMessage, SendError>,
}

/// How hosts reach the rest of the production: the runtime implements it, and the test
/// harness implements it with stubbed targets.
pub trait Dispatcher: Send + Sync + 'static {
    fn call(&self, call: Call) -> BoxFuture<CallReply>;
    fn event(&self, level: Level, item: &str, session_id: Option<i64>, text: &str);
    /// Raise an alert about `item` (the IRIS `Ens.Alert` pattern): an event at level
    /// alert, and a message to the production's alert target when it has one.
    fn alert(&self, item: &str, session_id: Option<i64>, text: &str) {
        self.event(Level::Alert, item, session_id, text);
    }
    /// `Some(enabled)` for a known item, `None` for an unknown one.
    fn item_enabled(&self, item: &str) -> Option<bool>;
    fn embedded_db(&self) -> Option<EmbeddedDb>;
    /// Whether a session began before this run of the production: its requests are
    /// being re-delivered after a restart.
    fn replayed(&self, _session_id: i64) -> bool {
        false
    }
}

/// What every host gets: its item name, the event log, the embedded database.
#[derive(Clone)]
pub struct HostContext {
    item: Arc<str>,
    dispatcher: Arc<dyn Dispatcher>,
    stopping: Arc<AtomicBool>,
}

impl HostContext {
    pub fn new(item: impl Into<Arc<str>>, dispatcher: Arc<dyn Dispatcher>) -> Self {
        Self {
            item: item.into(),
            dispatcher,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn with_stop_flag(
        item: impl Into<Arc<str>>,
        dispatcher: Arc<dyn Dispatcher>,
        stopping: Arc<AtomicBool>,
    ) -> Self {
        Self {
            item: item.into(),
            dispatcher,
            stopping,
        }
    }

    pub fn item(&self) -> &str {
        &self.item
    }

    /// The production's embedded database (SQLite), where the production has one.
    pub fn embedded_db(&self) -> Result<EmbeddedDb, HostError> {
        self.dispatcher.embedded_db().ok_or_else(|| {
            HostError::new(format!(
                "item '{}': this production has no embedded database",
                self.item
            ))
        })
    }

    /// Whether another item exists and is enabled.
    pub fn item_enabled(&self, item: &str) -> Option<bool> {
        self.dispatcher.item_enabled(item)
    }

    pub fn log(&self, level: Level, text: &str) {
        self.dispatcher.event(level, &self.item, None, text);
    }

    pub fn info(&self, text: &str) {
        self.log(Level::Info, text)
    }

    pub fn warn(&self, text: &str) {
        self.log(Level::Warn, text)
    }

    pub fn error(&self, text: &str) {
        self.log(Level::Error, text)
    }

    /// True once the production asked this instance to stop: long inputs stop early.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Context for handling one request of a session.
    pub fn for_request(&self, session_id: i64, request_id: i64) -> MessageContext {
        MessageContext {
            host: self.clone(),
            session_id,
            request_id,
        }
    }

    async fn call_raw(
        &self,
        target: &str,
        message: AnyMessage,
        session_id: Option<i64>,
        parent_id: Option<i64>,
        timeout: Option<Duration>,
        key: Option<String>,
    ) -> CallReply {
        self.dispatcher
            .call(Call {
                source: self.item.clone(),
                target: target.to_string(),
                session_id,
                parent_id,
                message,
                timeout,
                key,
            })
            .await
    }
}

/// Run blocking work (files, a synchronous driver) on the blocking pool, so the item's
/// thread stays free; a panic in `f` becomes an error instead of taking the item down.
pub async fn blocking<T, F>(f: F) -> HostResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HostError::new(format!("blocking task failed: {e}")))
}

/// The context of one request being handled: sends from here belong to its session.
#[derive(Clone)]
pub struct MessageContext {
    host: HostContext,
    session_id: i64,
    request_id: i64,
}

impl MessageContext {
    pub fn host(&self) -> &HostContext {
        &self.host
    }

    pub fn item(&self) -> &str {
        self.host.item()
    }

    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    pub fn request_id(&self) -> i64 {
        self.request_id
    }

    /// Send a request and decode its reply as `R`: the common case in one call.
    pub async fn call<R: Message, M: Message>(&self, target: &str, message: &M) -> HostResult<R> {
        self.send_request_sync(target, message).await?.decode::<R>()
    }

    /// Send a request and wait for its reply (the production's default timeout).
    pub async fn send_request_sync<M: Message>(
        &self,
        target: &str,
        message: &M,
    ) -> Result<AnyMessage, SendError> {
        self.send_request_sync_timeout(target, message, None).await
    }

    /// Send a request and wait for its reply, at most `timeout` (default when `None`).
    pub async fn send_request_sync_timeout<M: Message>(
        &self,
        target: &str,
        message: &M,
        timeout: Option<Duration>,
    ) -> Result<AnyMessage, SendError> {
        let message = AnyMessage::new(message).map_err(|e| SendError::ErrorReply {
            target: target.to_string(),
            message: e.message,
        })?;
        self.send_any(target, message, timeout).await
    }

    /// Send an already-built message (resend, forwarding).
    pub async fn send_any(
        &self,
        target: &str,
        message: AnyMessage,
        timeout: Option<Duration>,
    ) -> Result<AnyMessage, SendError> {
        self.host
            .call_raw(
                target,
                message,
                Some(self.session_id),
                Some(self.request_id),
                timeout,
                None,
            )
            .await
            .result
    }

    /// Whether this request's session began before the production's current run: it is
    /// being re-delivered after a restart, so work done before the crash may be done
    /// already (check before writing twice).
    pub fn replayed(&self) -> bool {
        self.host.dispatcher.replayed(self.session_id)
    }

    /// A trace entry in the event log, shown with the session.
    pub fn trace(&self, text: &str) {
        self.log(Level::Trace, text)
    }

    pub fn log(&self, level: Level, text: &str) {
        self.host
            .dispatcher
            .event(level, &self.host.item, Some(self.session_id), text);
    }
}

/// A reply to a `send_request_async`, handed to `on_response`.
#[derive(Debug)]
pub struct AsyncReply {
    pub completion_key: String,
    pub target: String,
    pub request: AnyMessage,
    pub result: Result<AnyMessage, SendError>,
}

type PendingReply = Pin<Box<dyn Future<Output = AsyncReply>>>;

/// The context of one business-process instance: its request, its pending async calls,
/// and its own state (IRIS's `context`), which lives until the instance replies.
pub struct ProcessContext {
    message: MessageContext,
    request: Option<AnyMessage>,
    pending: RefCell<FuturesUnordered<PendingReply>>,
    state: RefCell<std::collections::HashMap<std::any::TypeId, Box<dyn std::any::Any>>>,
}

impl std::ops::Deref for ProcessContext {
    type Target = MessageContext;
    fn deref(&self) -> &MessageContext {
        &self.message
    }
}

impl ProcessContext {
    pub fn new(message: MessageContext) -> Self {
        Self {
            message,
            request: None,
            pending: RefCell::new(FuturesUnordered::new()),
            state: RefCell::default(),
        }
    }

    /// The same, knowing the request this instance handles.
    pub fn with_request(message: MessageContext, request: AnyMessage) -> Self {
        Self {
            request: Some(request),
            ..Self::new(message)
        }
    }

    /// The request this instance handles (for `on_response` / `on_complete`).
    pub fn request(&self) -> Option<&AnyMessage> {
        self.request.as_ref()
    }

    /// This instance's state of type `T` (created with `T::default()` on first use):
    /// what `on_request`, `on_response` and `on_complete` share for one request.
    pub fn with_state<T: Default + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut states = self.state.borrow_mut();
        let slot = states
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        match slot.downcast_mut::<T>() {
            Some(state) => f(state),
            // Keyed by its own TypeId, a slot always holds a T; rebuild if not.
            None => {
                let mut fresh = T::default();
                let out = f(&mut fresh);
                *slot = Box::new(fresh);
                out
            }
        }
    }

    /// Send a request without waiting: its reply is given to `on_response` with
    /// `completion_key`, and the process replies once every such reply is in.
    pub fn send_request_async<M: Message>(
        &self,
        target: &str,
        message: &M,
        completion_key: &str,
    ) -> Result<(), SendError> {
        let message = AnyMessage::new(message).map_err(|e| SendError::ErrorReply {
            target: target.to_string(),
            message: e.message,
        })?;
        let ctx = self.message.clone();
        let target = target.to_string();
        let completion_key = completion_key.to_string();
        let fut = async move {
            let result = ctx.send_any(&target, message.clone(), None).await;
            AsyncReply {
                completion_key,
                target,
                request: message,
                result,
            }
        };
        self.pending.borrow_mut().push(Box::pin(fut));
        Ok(())
    }

    /// Number of async requests still waiting for a reply.
    pub fn pending(&self) -> usize {
        self.pending.borrow().len()
    }

    pub(crate) async fn next_reply(&self) -> Option<AsyncReply> {
        // Take the set out while awaiting so `on_response` may add to it meanwhile.
        let mut pending = std::mem::take(&mut *self.pending.borrow_mut());
        let next = pending.next().await;
        let mut slot = self.pending.borrow_mut();
        for added in std::mem::take(&mut *slot) {
            pending.push(added);
        }
        *slot = pending;
        next
    }
}

/// A business operation: reaches the outside through its adapter, one message at a time
/// per instance (`pool_size` instances), as an IRIS operation job does.
#[allow(async_fn_in_trait)]
pub trait BusinessOperation: Sized + 'static {
    /// The class name used in config (`class = "op-file"`).
    const CLASS: &'static str;
    type Settings: Settings;
    /// The request types it accepts (see [`request_set!`](crate::request_set)).
    type Request: RequestSet;

    /// Settings that name other items, and what is sent to them.
    fn targets() -> Vec<Target> {
        Vec::new()
    }

    /// Build an instance from its settings; check them here and fail with a clear error.
    fn new(settings: Self::Settings, ctx: &HostContext) -> HostResult<Self>;

    /// Connect, open files: called once per instance before its first message.
    async fn on_init(&mut self, _ctx: &HostContext) -> HostResult<()> {
        Ok(())
    }

    /// Handle one request and reply.
    async fn on_message(
        &mut self,
        ctx: &MessageContext,
        request: Self::Request,
    ) -> HostResult<AnyMessage>;

    /// Handle the requests that queued up while the last batch ran, one reply each in
    /// order. Override to write them in one transaction or one flush.
    async fn on_batch(
        &mut self,
        batch: Vec<(MessageContext, Self::Request)>,
    ) -> Vec<HostResult<AnyMessage>> {
        let mut replies = Vec::with_capacity(batch.len());
        for (ctx, request) in batch {
            replies.push(self.on_message(&ctx, request).await);
        }
        replies
    }

    /// Called exactly once per instance when it stops (stop, restart, update).
    async fn on_tear_down(&mut self, _ctx: &HostContext) {}
}

/// A business process: the logic between services and operations. Requests are handled
/// concurrently (each is its own process instance in IRIS terms), so handlers take `&self`.
#[allow(async_fn_in_trait)]
pub trait BusinessProcess: Sized + 'static {
    const CLASS: &'static str;
    type Settings: Settings;
    type Request: RequestSet;

    fn targets() -> Vec<Target> {
        Vec::new()
    }

    fn new(settings: Self::Settings, ctx: &HostContext) -> HostResult<Self>;

    async fn on_init(&mut self, _ctx: &HostContext) -> HostResult<()> {
        Ok(())
    }

    /// Handle a request. Return the reply, or `None` to reply from `on_response` /
    /// `on_complete` once the async requests sent here are answered.
    async fn on_request(
        &self,
        ctx: &ProcessContext,
        request: Self::Request,
    ) -> HostResult<Option<AnyMessage>>;

    /// A reply to one of this instance's `send_request_async`. Returning `Some` sets the
    /// reply the process gives (the last one set wins).
    async fn on_response(
        &self,
        _ctx: &ProcessContext,
        _reply: AsyncReply,
    ) -> HostResult<Option<AnyMessage>> {
        Ok(None)
    }

    /// Called once all async replies are in.
    async fn on_complete(&self, _ctx: &ProcessContext) -> HostResult<Option<AnyMessage>> {
        Ok(None)
    }

    async fn on_tear_down(&self, _ctx: &HostContext) {}
}

/// A business service: takes data in and sends it on as requests, each input its own
/// session. With a `call_interval` its inbound adapter calls `on_process_input` on that
/// period (the `Ens.InboundAdapter` pattern); without one it is driven from outside (HTTP).
#[allow(async_fn_in_trait)]
pub trait BusinessService: Sized + 'static {
    const CLASS: &'static str;
    type Settings: Settings;
    /// Most instances one item may run (e.g. 1 for a service that owns an inbox folder);
    /// `validate` refuses a larger `pool_size`.
    const MAX_POOL_SIZE: Option<usize> = None;

    fn targets() -> Vec<Target> {
        Vec::new()
    }

    fn new(settings: Self::Settings, ctx: &HostContext) -> HostResult<Self>;

    /// How often the inbound adapter polls; `None` when the service is driven from outside.
    fn call_interval(&self) -> Option<Duration> {
        None
    }

    async fn on_init(&mut self, _ctx: &ServiceContext) -> HostResult<()> {
        Ok(())
    }

    /// One poll of the inbound adapter.
    async fn on_process_input(&mut self, _ctx: &ServiceContext) -> HostResult<()> {
        Ok(())
    }

    async fn on_tear_down(&mut self, _ctx: &ServiceContext) {}
}

/// What a service sends with: every request it sends starts a new session.
#[derive(Clone)]
pub struct ServiceContext {
    host: HostContext,
}

impl std::ops::Deref for ServiceContext {
    type Target = HostContext;
    fn deref(&self) -> &HostContext {
        &self.host
    }
}

impl ServiceContext {
    pub fn new(host: HostContext) -> Self {
        Self { host }
    }

    /// Send a request as a new session and wait for the reply.
    pub async fn send_request_sync<M: Message>(
        &self,
        target: &str,
        message: &M,
    ) -> Result<AnyMessage, SendError> {
        self.send_request_session(target, message).await.result
    }

    /// Like `send_request_sync`, also returning the new session's id.
    pub async fn send_request_session<M: Message>(&self, target: &str, message: &M) -> CallReply {
        match AnyMessage::new(message) {
            Ok(message) => self.send_any(target, message, None).await,
            Err(e) => CallReply {
                session_id: 0,
                request_id: 0,
                result: Err(SendError::ErrorReply {
                    target: target.to_string(),
                    message: e.message,
                }),
            },
        }
    }

    /// Send an already-built message as a new session.
    pub async fn send_any(
        &self,
        target: &str,
        message: AnyMessage,
        timeout: Option<Duration>,
    ) -> CallReply {
        self.host
            .call_raw(target, message, None, None, timeout, None)
            .await
    }

    /// Send a request as a new session identified by `key` (e.g. file + line): if an
    /// input with that key was already accepted, even before a restart, nothing is sent
    /// and the reply is `Err(SendError::Duplicate)`. This is how an inbound service
    /// resumes a half-read input without sending any row twice.
    pub async fn send_request_keyed<M: Message>(
        &self,
        target: &str,
        message: &M,
        key: String,
    ) -> CallReply {
        match AnyMessage::new(message) {
            Ok(message) => {
                self.host
                    .call_raw(target, message, None, None, None, Some(key))
                    .await
            }
            Err(e) => CallReply {
                session_id: 0,
                request_id: 0,
                result: Err(SendError::ErrorReply {
                    target: target.to_string(),
                    message: e.message,
                }),
            },
        }
    }
}

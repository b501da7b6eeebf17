//! Test a host in isolation: build it from its settings, send it messages, and assert
//! on its replies, the requests it sent and its event-log lines, with its targets'
//! replies stubbed. No actors, no production; an embedded database only if asked.
//!
//! ```
//! # use interop::prelude::*;
//! # use interop::testing::TestContext;
//! # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping { n: u32 }
//! # impl Message for Ping { const TYPE_NAME: &'static str = "Ping"; }
//! # #[derive(Clone, Serialize, Deserialize)] #[serde(deny_unknown_fields)] struct S { target: String }
//! # request_set! { pub enum Req { Ping(Ping) } }
//! # struct Relay { target: String }
//! # impl BusinessProcess for Relay {
//! #     const CLASS: &'static str = "relay"; type Settings = S; type Request = Req;
//! #     fn new(s: S, _: &HostContext) -> HostResult<Self> { Ok(Relay { target: s.target }) }
//! #     async fn on_request(&self, ctx: &ProcessContext, r: Req) -> HostResult<Option<AnyMessage>> {
//! #         let Req::Ping(p) = r; Ok(Some(ctx.send_request_sync(&self.target, &p).await?)) }
//! # }
//! # actix_rt::System::new().block_on(async {
//! let ctx = TestContext::new().reply_from("Echo", |p: Ping| Ping { n: p.n + 1 });
//! let relay = ctx.process::<Relay>(S { target: "Echo".into() }).await.unwrap();
//! let reply = relay.send(&Ping { n: 1 }).await.unwrap().decode::<Ping>().unwrap();
//! assert_eq!(reply.n, 2);
//! assert_eq!(ctx.sent().len(), 1);
//! # });
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{HostError, SendError};
use crate::host::{
    BoxFuture, BusinessOperation, BusinessProcess, BusinessService, Call, CallReply, Dispatcher,
    HostContext, HostResult, ProcessContext, ServiceContext,
};
use crate::message::{AnyMessage, Message, RequestSet};
use crate::store::{EmbeddedDb, Level};

type Stub = Arc<dyn Fn(&AnyMessage) -> Result<AnyMessage, HostError> + Send + Sync>;

/// A request a host under test sent.
#[derive(Clone, Debug)]
pub struct SentRequest {
    pub source: String,
    pub target: String,
    pub session_id: Option<i64>,
    pub message: AnyMessage,
}

#[derive(Default)]
struct Shared {
    /// Item name given to hosts built here (default: their class name).
    item_name: Option<String>,
    /// Stubs answering after a delay, by target.
    delays: HashMap<String, std::time::Duration>,
    stubs: HashMap<String, Stub>,
    disabled: Vec<String>,
    sent: Mutex<Vec<SentRequest>>,
    events: Mutex<Vec<(Level, String)>>,
    db: Option<EmbeddedDb>,
    next_id: AtomicI64,
    replaying: bool,
}

impl Dispatcher for Shared {
    fn call(&self, call: Call) -> BoxFuture<CallReply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let session_id = call.session_id.unwrap_or(id);
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(SentRequest {
                source: call.source.to_string(),
                target: call.target.clone(),
                session_id: call.session_id,
                message: call.message.clone(),
            });
        }
        let delay = self.delays.get(&call.target).copied();
        let result = if self.disabled.contains(&call.target) {
            Err(SendError::TargetDisabled(call.target))
        } else {
            match self.stubs.get(&call.target) {
                None => Err(SendError::UnknownTarget(call.target)),
                Some(stub) => stub(&call.message).map_err(|e| SendError::ErrorReply {
                    target: call.target.clone(),
                    message: e.message,
                }),
            }
        };
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            CallReply {
                session_id,
                request_id: id,
                result,
            }
        })
    }

    fn event(&self, level: Level, _item: &str, _session_id: Option<i64>, text: &str) {
        if let Ok(mut events) = self.events.lock() {
            events.push((level, text.to_string()));
        }
    }

    fn item_enabled(&self, item: &str) -> Option<bool> {
        if self.disabled.iter().any(|d| d == item) {
            Some(false)
        } else if self.stubs.contains_key(item) {
            Some(true)
        } else {
            None
        }
    }

    fn embedded_db(&self) -> Option<EmbeddedDb> {
        self.db.clone()
    }

    fn replayed(&self, _session_id: i64) -> bool {
        self.replaying
    }
}

/// Builder and recorder for testing one host. Configure stubs first, then build hosts.
#[derive(Clone, Default)]
pub struct TestContext {
    shared: Arc<Shared>,
}

impl TestContext {
    pub fn new() -> Self {
        Self::default()
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared)
            .unwrap_or_else(|| panic!("configure the TestContext before building hosts with it"))
    }

    /// Stub `target`: it answers requests of type `M` with `f(request)`.
    pub fn reply_from<M: Message, R: Message>(
        mut self,
        target: &str,
        f: impl Fn(M) -> R + Send + Sync + 'static,
    ) -> Self {
        let stub: Stub = Arc::new(move |msg: &AnyMessage| {
            let request = msg.decode::<M>()?;
            AnyMessage::new(&f(request))
        });
        self.shared_mut().stubs.insert(target.to_string(), stub);
        self
    }

    /// Stub `target` with a function of the raw message (several types, or errors).
    pub fn reply_any(
        mut self,
        target: &str,
        f: impl Fn(&AnyMessage) -> Result<AnyMessage, HostError> + Send + Sync + 'static,
    ) -> Self {
        self.shared_mut()
            .stubs
            .insert(target.to_string(), Arc::new(f));
        self
    }

    /// Make `target`'s stub answer after `delay` (slow targets, concurrency limits).
    pub fn delay_from(mut self, target: &str, delay: std::time::Duration) -> Self {
        self.shared_mut().delays.insert(target.to_string(), delay);
        self
    }

    /// Build hosts as the item `name` (as in the production's config), not their class.
    pub fn named(mut self, name: &str) -> Self {
        self.shared_mut().item_name = Some(name.to_string());
        self
    }

    /// Stub `target` so that every request gets an error reply.
    pub fn fail_from(self, target: &str, error: &str) -> Self {
        let error = error.to_string();
        self.reply_any(target, move |_| Err(HostError::new(error.clone())))
    }

    /// Make `target` a disabled item.
    pub fn disabled(mut self, target: &str) -> Self {
        self.shared_mut().disabled.push(target.to_string());
        self
    }

    /// Treat every session as re-delivered after a restart (`MessageContext::replayed`).
    pub fn replaying(mut self) -> Self {
        self.shared_mut().replaying = true;
        self
    }

    /// Give hosts an embedded database at `path` (created and migrated).
    pub fn with_embedded_db(mut self, path: &Path) -> Result<Self, crate::StoreError> {
        let db = EmbeddedDb::open(path)?;
        self.shared_mut().db = Some(db);
        Ok(self)
    }

    pub fn embedded_db(&self) -> Option<EmbeddedDb> {
        self.shared.db.clone()
    }

    /// Requests sent by hosts built from this context, in order.
    pub fn sent(&self) -> Vec<SentRequest> {
        self.shared
            .sent
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Requests sent to `target`, decoded as `M`.
    pub fn sent_to<M: Message>(&self, target: &str) -> Vec<M> {
        self.sent()
            .into_iter()
            .filter(|s| s.target == target)
            .filter_map(|s| s.message.decode::<M>().ok())
            .collect()
    }

    /// Event-log lines written, in order.
    pub fn events(&self) -> Vec<(Level, String)> {
        self.shared
            .events
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    fn host_context(&self, class: &str) -> HostContext {
        let item = self.shared.item_name.as_deref().unwrap_or(class);
        HostContext::new(item, self.shared.clone() as Arc<dyn Dispatcher>)
    }

    /// Build an operation (and run its `on_init`).
    pub async fn operation<H: BusinessOperation>(
        &self,
        settings: H::Settings,
    ) -> HostResult<TestOperation<H>> {
        let ctx = self.host_context(H::CLASS);
        let mut host = H::new(settings, &ctx)?;
        host.on_init(&ctx).await?;
        Ok(TestOperation {
            host,
            ctx,
            next: AtomicI64::new(0),
        })
    }

    /// Build a process (and run its `on_init`).
    pub async fn process<H: BusinessProcess>(
        &self,
        settings: H::Settings,
    ) -> HostResult<TestProcess<H>> {
        let ctx = self.host_context(H::CLASS);
        let mut host = H::new(settings, &ctx)?;
        host.on_init(&ctx).await?;
        Ok(TestProcess {
            host,
            ctx,
            next: AtomicI64::new(0),
        })
    }

    /// Build a service (and run its `on_init`).
    pub async fn service<H: BusinessService>(
        &self,
        settings: H::Settings,
    ) -> HostResult<TestService<H>> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let item = self.shared.item_name.as_deref().unwrap_or(H::CLASS);
        let host_ctx = HostContext::with_stop_flag(
            item,
            self.shared.clone() as Arc<dyn Dispatcher>,
            stop.clone(),
        );
        let ctx = ServiceContext::new(host_ctx);
        let mut host = H::new(settings, &ctx)?;
        host.on_init(&ctx).await?;
        Ok(TestService { host, ctx, stop })
    }
}

/// Parse a class's settings from TOML text, as the config file gives them.
pub fn settings_from_toml<S: crate::host::Settings>(text: &str) -> Result<S, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// An operation under test.
pub struct TestOperation<H: BusinessOperation> {
    pub host: H,
    ctx: HostContext,
    next: AtomicI64,
}

impl<H: BusinessOperation> TestOperation<H> {
    /// Send one request, as its own session; unexpected types are refused as in a
    /// production.
    pub async fn send<M: Message>(&mut self, message: &M) -> HostResult<AnyMessage> {
        let any = AnyMessage::new(message)?;
        self.send_any(&any).await
    }

    pub async fn send_any(&mut self, message: &AnyMessage) -> HostResult<AnyMessage> {
        let request = H::Request::decode(message)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let ctx = self.ctx.for_request(id, id);
        self.host.on_message(&ctx, request).await
    }

    /// Send several requests as one batch (as queued requests reach the host).
    pub async fn send_batch<M: Message>(&mut self, messages: &[M]) -> Vec<HostResult<AnyMessage>> {
        let mut batch = Vec::new();
        for m in messages {
            let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            let decoded = AnyMessage::new(m).and_then(|a| H::Request::decode(&a));
            match decoded {
                Ok(r) => batch.push((self.ctx.for_request(id, id), r)),
                Err(e) => return vec![Err(e)],
            }
        }
        self.host.on_batch(batch).await
    }

    pub async fn tear_down(mut self) {
        self.host.on_tear_down(&self.ctx).await;
    }
}

/// A process under test.
pub struct TestProcess<H: BusinessProcess> {
    pub host: H,
    ctx: HostContext,
    next: AtomicI64,
}

impl<H: BusinessProcess> TestProcess<H> {
    /// Send one request and run the process to its reply (async replies included).
    pub async fn send<M: Message>(&self, message: &M) -> HostResult<AnyMessage> {
        let any = AnyMessage::new(message)?;
        self.send_any(&any).await
    }

    pub async fn send_any(&self, message: &AnyMessage) -> HostResult<AnyMessage> {
        let request = H::Request::decode(message)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let pctx = ProcessContext::with_request(self.ctx.for_request(id, id), message.clone());
        crate::runtime::actors::run_process(&self.host, &pctx, request).await
    }

    pub async fn tear_down(self) {
        self.host.on_tear_down(&self.ctx).await;
    }
}

/// A service under test.
pub struct TestService<H: BusinessService> {
    pub host: H,
    ctx: ServiceContext,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl<H: BusinessService> TestService<H> {
    /// One poll of the inbound adapter.
    pub async fn process_input(&mut self) -> HostResult<()> {
        self.host.on_process_input(&self.ctx).await
    }

    pub fn context(&self) -> &ServiceContext {
        &self.ctx
    }

    /// Ask the service to stop, as the production does on stop: `ctx.stopping()` turns
    /// true, so a long input stops early.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub async fn tear_down(mut self) {
        self.host.on_tear_down(&self.ctx).await;
    }
}

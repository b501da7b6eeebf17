//! The Actix actors that run business hosts. One actor type fronts every host: it owns
//! the bounded mailbox and the life cycle, and feeds a worker future that owns the host.
//! Operations take the requests queued so far as one batch; processes run each request
//! as its own instance, up to a bound; services run their inbound adapter's loop.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::stats::ItemStats;
use crate::error::HostError;
use crate::host::{
    BusinessOperation, BusinessProcess, BusinessService, Dispatcher, HostContext, HostResult,
    ProcessContext, ServiceContext, Settings,
};
use crate::message::{Ack, AnyMessage, RequestSet};
use crate::store::{Level, MessageStore, Status, StatusUpdate};

/// Requests an operation instance takes in one batch, at most.
const MAX_BATCH: usize = 256;
/// Requests waiting inside one instance (beyond its Actix mailbox).
const QUEUE_CAPACITY: usize = 1024;
/// Actix mailbox capacity: a full mailbox makes senders wait (back-pressure).
const MAILBOX_CAPACITY: usize = 256;
/// Requests one process instance handles concurrently.
const PROCESS_IN_FLIGHT: usize = 4096;

/// A stored request handed to an instance; the reply goes back through `reply_to`.
pub(crate) struct Deliver {
    pub request_id: i64,
    pub session_id: i64,
    pub message: AnyMessage,
    pub reply_to: oneshot::Sender<HostResult<AnyMessage>>,
}

impl actix::Message for Deliver {
    /// `Err` gives the request back when the instance is stopping, to route it again.
    type Result = Result<(), Deliver>;
}

/// Stop taking requests, finish those taken, tear down.
pub(crate) struct Shutdown;

impl actix::Message for Shutdown {
    type Result = ();
}

/// What an instance needs, whatever its class.
#[derive(Clone)]
pub(crate) struct InstanceSpec {
    pub item: Arc<str>,
    pub settings: serde_json::Value,
    pub dispatcher: Arc<dyn Dispatcher>,
    pub store: Arc<dyn MessageStore>,
    pub stats: Arc<ItemStats>,
    pub arbiter: ArbiterHandle,
}

/// A started instance: its addresses and when it is ready (its `on_init` done).
pub(crate) struct StartedInstance {
    pub deliver: Recipient<Deliver>,
    pub shutdown: Recipient<Shutdown>,
    pub ready: oneshot::Receiver<HostResult<()>>,
}

type Worker = Box<dyn FnOnce(mpsc::Receiver<Deliver>, Arc<AtomicBool>, oneshot::Sender<()>) + Send>;

/// The actor fronting one instance of any host.
pub(crate) struct HostActor {
    start_worker: Option<Worker>,
    queue: Option<mpsc::Sender<Deliver>>,
    stopping: Arc<AtomicBool>,
    done: Option<oneshot::Receiver<()>>,
}

impl Actor for HostActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (done_tx, done_rx) = oneshot::channel();
        self.queue = Some(tx);
        self.done = Some(done_rx);
        if let Some(start) = self.start_worker.take() {
            start(rx, self.stopping.clone(), done_tx);
        }
    }
}

impl Handler<Deliver> for HostActor {
    type Result = AtomicResponse<Self, Result<(), Deliver>>;

    fn handle(&mut self, msg: Deliver, _ctx: &mut Context<Self>) -> Self::Result {
        let queue = self.queue.clone();
        AtomicResponse::new(Box::pin(
            async move {
                match queue {
                    // Waits while the instance's queue is full: the mailbox then fills up
                    // and the sender waits too.
                    Some(q) => q.send(msg).await.map_err(|e| e.0),
                    None => Err(msg),
                }
            }
            .into_actor(self),
        ))
    }
}

impl Handler<Shutdown> for HostActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.stopping.store(true, Ordering::SeqCst);
        self.queue = None; // the worker drains what it has, then tears down
        let done = self.done.take();
        Box::pin(
            async move {
                if let Some(done) = done {
                    let _ = done.await;
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

pub(crate) fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

fn decode_settings<S: Settings>(spec: &InstanceSpec) -> HostResult<S> {
    serde_json::from_value(spec.settings.clone())
        .map_err(|e| HostError::new(format!("item '{}': settings: {e}", spec.item)))
}

fn mark_delivered(spec: &InstanceSpec, d: &Deliver) {
    spec.stats.dequeued();
    if spec.store.persistent() {
        // Not awaited: a lost "delivered" only means a re-delivery after a crash.
        spec.store.update_detached(StatusUpdate {
            id: d.request_id,
            status: Status::Delivered,
            error_text: None,
            processed: None,
        });
    }
}

fn host_context(spec: &InstanceSpec, stopping: Arc<AtomicBool>) -> HostContext {
    HostContext::with_stop_flag(spec.item.clone(), spec.dispatcher.clone(), stopping)
}

async fn build_operation<H: BusinessOperation>(
    spec: &InstanceSpec,
    ctx: &HostContext,
) -> HostResult<H> {
    let settings = decode_settings::<H::Settings>(spec)?;
    let mut host = H::new(settings, ctx)?;
    match AssertUnwindSafe(host.on_init(ctx)).catch_unwind().await {
        Ok(r) => r?,
        Err(p) => {
            return Err(HostError::new(format!(
                "on_init panicked: {}",
                panic_text(&p)
            )))
        }
    }
    Ok(host)
}

/// Keep rebuilding a host whose instance panicked, until it builds or the item stops.
async fn rebuild<T, F, Fut>(spec: &InstanceSpec, stopping: &AtomicBool, build: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = HostResult<T>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match build().await {
            Ok(h) => {
                spec.dispatcher
                    .event(Level::Info, &spec.item, None, "instance restarted");
                return Some(h);
            }
            Err(e) => {
                spec.dispatcher.event(
                    Level::Error,
                    &spec.item,
                    None,
                    &format!("restart failed: {e}; retrying in {} ms", delay.as_millis()),
                );
                if stopping.load(Ordering::SeqCst) {
                    return None;
                }
                actix_rt::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A worker future of one kind of host: it owns the host and reports when it is ready.
type WorkerFn<Fut> = fn(
    InstanceSpec,
    mpsc::Receiver<Deliver>,
    Arc<AtomicBool>,
    oneshot::Sender<HostResult<()>>,
    oneshot::Sender<()>,
) -> Fut;

/// Start an instance whose worker is `worker` (run on the instance's arbiter).
fn start_with<Fut: std::future::Future<Output = ()> + 'static>(
    spec: InstanceSpec,
    worker: WorkerFn<Fut>,
) -> StartedInstance {
    let (ready_tx, ready_rx) = oneshot::channel();
    let worker_spec = spec.clone();
    let start: Worker = Box::new(move |rx, stopping, done| {
        actix_rt::spawn(worker(worker_spec, rx, stopping, ready_tx, done));
    });
    spawn(spec, start, ready_rx)
}

pub(crate) fn start_operation<H: BusinessOperation>(spec: InstanceSpec) -> StartedInstance {
    start_with(spec, operation_worker::<H>)
}

pub(crate) fn start_process<H: BusinessProcess>(spec: InstanceSpec) -> StartedInstance {
    start_with(spec, process_worker::<H>)
}

pub(crate) fn start_service<H: BusinessService>(spec: InstanceSpec) -> StartedInstance {
    start_with(spec, service_worker::<H>)
}

fn spawn(
    spec: InstanceSpec,
    worker: Worker,
    ready: oneshot::Receiver<HostResult<()>>,
) -> StartedInstance {
    let addr = HostActor::start_in_arbiter(&spec.arbiter, move |_| HostActor {
        start_worker: Some(worker),
        queue: None,
        stopping: Arc::new(AtomicBool::new(false)),
        done: None,
    });
    StartedInstance {
        deliver: addr.clone().recipient(),
        shutdown: addr.recipient(),
        ready,
    }
}

async fn operation_worker<H: BusinessOperation>(
    spec: InstanceSpec,
    mut rx: mpsc::Receiver<Deliver>,
    stopping: Arc<AtomicBool>,
    ready: oneshot::Sender<HostResult<()>>,
    done: oneshot::Sender<()>,
) {
    let ctx = host_context(&spec, stopping.clone());
    let mut host = match build_operation::<H>(&spec, &ctx).await {
        Ok(h) => {
            let _ = ready.send(Ok(()));
            h
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            let _ = done.send(());
            return;
        }
    };
    let mut buf = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut buf, MAX_BATCH).await > 0 {
        let mut batch = Vec::with_capacity(buf.len());
        let mut reply_to = Vec::with_capacity(buf.len());
        for d in buf.drain(..) {
            mark_delivered(&spec, &d);
            match H::Request::decode(&d.message) {
                Ok(request) => {
                    batch.push((ctx.for_request(d.session_id, d.request_id), request));
                    reply_to.push(d.reply_to);
                }
                Err(e) => {
                    let _ = d.reply_to.send(Err(e));
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let count = batch.len();

        match AssertUnwindSafe(host.on_batch(batch)).catch_unwind().await {
            Ok(replies) => {
                if replies.len() != count {
                    let e = HostError::new(format!(
                        "item '{}': on_batch gave {} replies for {count} requests",
                        spec.item,
                        replies.len()
                    ));
                    for tx in reply_to {
                        let _ = tx.send(Err(e.clone()));
                    }
                    continue;
                }
                for (tx, reply) in reply_to.into_iter().zip(replies) {
                    let _ = tx.send(reply);
                }
            }
            Err(panic) => {
                let text = panic_text(&panic);
                let e = HostError::new(format!("item '{}' panicked: {text}", spec.item));
                for tx in reply_to {
                    let _ = tx.send(Err(e.clone()));
                }
                spec.stats.restarted();
                spec.dispatcher.alert(
                    &spec.item,
                    None,
                    &format!("instance panicked ({text}); restarting it"),
                );
                let _ = AssertUnwindSafe(host.on_tear_down(&ctx))
                    .catch_unwind()
                    .await;
                match rebuild(&spec, &stopping, || build_operation::<H>(&spec, &ctx)).await {
                    Some(h) => host = h,
                    None => {
                        let _ = done.send(());
                        return;
                    }
                }
            }
        }
    }
    let _ = AssertUnwindSafe(host.on_tear_down(&ctx))
        .catch_unwind()
        .await;
    let _ = done.send(());
}

async fn build_process<H: BusinessProcess>(
    spec: &InstanceSpec,
    ctx: &HostContext,
) -> HostResult<H> {
    let settings = decode_settings::<H::Settings>(spec)?;
    let mut host = H::new(settings, ctx)?;
    match AssertUnwindSafe(host.on_init(ctx)).catch_unwind().await {
        Ok(r) => r?,
        Err(p) => {
            return Err(HostError::new(format!(
                "on_init panicked: {}",
                panic_text(&p)
            )))
        }
    }
    Ok(host)
}

pub(crate) async fn run_process<H: BusinessProcess>(
    host: &H,
    ctx: &ProcessContext,
    request: H::Request,
) -> HostResult<AnyMessage> {
    let mut reply = host.on_request(ctx, request).await?;
    while let Some(answer) = ctx.next_reply().await {
        if let Some(r) = host.on_response(ctx, answer).await? {
            reply = Some(r);
        }
    }
    if let Some(r) = host.on_complete(ctx).await? {
        reply = Some(r);
    }
    match reply {
        Some(r) => Ok(r),
        None => AnyMessage::new(&Ack {}),
    }
}

async fn process_worker<H: BusinessProcess>(
    spec: InstanceSpec,
    mut rx: mpsc::Receiver<Deliver>,
    stopping: Arc<AtomicBool>,
    ready: oneshot::Sender<HostResult<()>>,
    done: oneshot::Sender<()>,
) {
    let ctx = host_context(&spec, stopping);
    let host = match build_process::<H>(&spec, &ctx).await {
        Ok(h) => {
            let _ = ready.send(Ok(()));
            Rc::new(h)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            let _ = done.send(());
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(PROCESS_IN_FLIGHT));
    while let Some(d) = rx.recv().await {
        mark_delivered(&spec, &d);
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let request = match H::Request::decode(&d.message) {
            Ok(r) => r,
            Err(e) => {
                let _ = d.reply_to.send(Err(e));
                continue;
            }
        };
        let host = host.clone();
        let pctx = ProcessContext::with_request(
            ctx.for_request(d.session_id, d.request_id),
            d.message.clone(),
        );
        let spec = spec.clone();
        actix_rt::spawn(async move {
            let result = AssertUnwindSafe(run_process(&*host, &pctx, request))
                .catch_unwind()
                .await;

            let reply = match result {
                Ok(r) => r,
                Err(panic) => {
                    let text = panic_text(&panic);
                    spec.stats.restarted();
                    spec.dispatcher.alert(
                        &spec.item,
                        Some(d.session_id),
                        &format!(
                            "process instance panicked ({text}) handling message {}",
                            d.request_id
                        ),
                    );
                    Err(HostError::new(format!(
                        "item '{}' panicked: {text}",
                        spec.item
                    )))
                }
            };
            let _ = d.reply_to.send(reply);
            drop(permit);
        });
    }
    // Wait for the instances in flight, then tear down.
    let _ = slots.acquire_many(PROCESS_IN_FLIGHT as u32).await;
    let _ = AssertUnwindSafe(host.on_tear_down(&ctx))
        .catch_unwind()
        .await;
    let _ = done.send(());
}

async fn build_service<H: BusinessService>(
    spec: &InstanceSpec,
    ctx: &ServiceContext,
) -> HostResult<H> {
    let settings = decode_settings::<H::Settings>(spec)?;
    let mut host = H::new(settings, ctx)?;
    match AssertUnwindSafe(host.on_init(ctx)).catch_unwind().await {
        Ok(r) => r?,
        Err(p) => {
            return Err(HostError::new(format!(
                "on_init panicked: {}",
                panic_text(&p)
            )))
        }
    }
    Ok(host)
}

async fn service_worker<H: BusinessService>(
    spec: InstanceSpec,
    mut rx: mpsc::Receiver<Deliver>,
    stopping: Arc<AtomicBool>,
    ready: oneshot::Sender<HostResult<()>>,
    done: oneshot::Sender<()>,
) {
    let ctx = ServiceContext::new(host_context(&spec, stopping.clone()));
    let mut host = match build_service::<H>(&spec, &ctx).await {
        Ok(h) => {
            let _ = ready.send(Ok(()));
            h
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            let _ = done.send(());
            return;
        }
    };
    let refuse = |d: Deliver| {
        let _ = d.reply_to.send(Err(HostError::new(format!(
            "item '{}' is a business service: it sends requests, it does not take them",
            spec.item
        ))));
    };
    loop {
        let interval = host.call_interval();
        if let Some(interval) = interval {
            match AssertUnwindSafe(host.on_process_input(&ctx))
                .catch_unwind()
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    spec.stats.error();
                    spec.dispatcher
                        .event(Level::Error, &spec.item, None, &e.message);
                }
                Err(panic) => {
                    let text = panic_text(&panic);
                    spec.stats.restarted();
                    spec.dispatcher.alert(
                        &spec.item,
                        None,
                        &format!("instance panicked ({text}); restarting it"),
                    );
                    let _ = AssertUnwindSafe(host.on_tear_down(&ctx))
                        .catch_unwind()
                        .await;
                    match rebuild(&spec, &stopping, || build_service::<H>(&spec, &ctx)).await {
                        Some(h) => host = h,
                        None => break,
                    }
                }
            }

            if stopping.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => refuse(d),
                    None => break,
                },
                _ = actix_rt::time::sleep(interval) => {}
            }
        } else {
            match rx.recv().await {
                Some(d) => refuse(d),
                None => break,
            }
        }
    }
    let _ = AssertUnwindSafe(host.on_tear_down(&ctx))
        .catch_unwind()
        .await;
    let _ = done.send(());
}

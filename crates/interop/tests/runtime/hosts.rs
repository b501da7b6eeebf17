//! Small hosts for exercising the runtime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use interop::prelude::*;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub n: i64,
}
impl Message for Ping {
    const TYPE_NAME: &'static str = "Ping";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    pub n: i64,
    pub by: String,
}
impl Message for Pong {
    const TYPE_NAME: &'static str = "Pong";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Other {}
impl Message for Other {
    const TYPE_NAME: &'static str = "Other";
}

/// Life-cycle counters per tag, shared with the tests.
#[derive(Default, Debug)]
pub struct Counters {
    pub inits: AtomicU32,
    pub tear_downs: AtomicU32,
    pub handled: AtomicU32,
}

pub fn counters(tag: &str) -> &'static Counters {
    static ALL: OnceLock<Mutex<HashMap<String, &'static Counters>>> = OnceLock::new();
    let mut all = ALL.get_or_init(Default::default).lock().unwrap();
    all.entry(tag.to_string())
        .or_insert_with(|| Box::leak(Box::default()))
}

request_set! {
    pub enum PingOnly { Ping(Ping) }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoSettings {
    /// Counter tag.
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub sleep_ms: u64,
    /// Panic when asked this number.
    #[serde(default)]
    pub panic_on: Option<i64>,
    /// Fail (error reply) when asked this number.
    #[serde(default)]
    pub fail_on: Option<i64>,
    /// A required setting, to test that validation asks for it.
    pub label: String,
}

/// Replies Pong to Ping.
pub struct Echo {
    s: EchoSettings,
}

impl BusinessOperation for Echo {
    const CLASS: &'static str = "test-echo";
    type Settings = EchoSettings;
    type Request = PingOnly;

    fn new(s: EchoSettings, _ctx: &HostContext) -> HostResult<Self> {
        Ok(Echo { s })
    }

    async fn on_init(&mut self, _ctx: &HostContext) -> HostResult<()> {
        counters(&self.s.tag).inits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn on_message(&mut self, _ctx: &MessageContext, r: PingOnly) -> HostResult<AnyMessage> {
        let PingOnly::Ping(p) = r;
        counters(&self.s.tag).handled.fetch_add(1, Ordering::SeqCst);
        if self.s.sleep_ms > 0 {
            actix_rt::time::sleep(Duration::from_millis(self.s.sleep_ms)).await;
        }
        if self.s.panic_on == Some(p.n) {
            panic!("asked to panic on {}", p.n);
        }
        if self.s.fail_on == Some(p.n) {
            return Err(HostError::new(format!("{} refuses {}", self.s.label, p.n)));
        }
        AnyMessage::new(&Pong {
            n: p.n,
            by: self.s.label.clone(),
        })
    }

    async fn on_tear_down(&mut self, _ctx: &HostContext) {
        counters(&self.s.tag)
            .tear_downs
            .fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSettings {
    pub first: String,
    pub second: String,
    /// Use send_request_async to both, replying from on_response / on_complete.
    #[serde(default)]
    pub asynchronous: bool,
    #[serde(default)]
    pub tag: String,
}

/// A process instance's running total.
#[derive(Default)]
struct Sum(i64);

/// Sends a Ping to two targets and replies the sum of what they answered.
pub struct Chain {
    s: ChainSettings,
}

impl BusinessProcess for Chain {
    const CLASS: &'static str = "test-chain";
    type Settings = ChainSettings;
    type Request = PingOnly;

    fn targets() -> Vec<Target> {
        vec![
            Target::sends::<Ping>("first"),
            Target::sends::<Ping>("second"),
        ]
    }

    fn new(s: ChainSettings, _ctx: &HostContext) -> HostResult<Self> {
        Ok(Chain { s })
    }

    async fn on_request(
        &self,
        ctx: &ProcessContext,
        r: PingOnly,
    ) -> HostResult<Option<AnyMessage>> {
        let PingOnly::Ping(p) = r;
        if self.s.asynchronous {
            ctx.send_request_async(&self.s.first, &Ping { n: p.n }, "first")?;
            ctx.send_request_async(&self.s.second, &Ping { n: p.n * 10 }, "second")?;
            return Ok(None);
        }
        let a = ctx
            .send_request_sync(&self.s.first, &Ping { n: p.n })
            .await?;
        let b = ctx
            .send_request_sync(&self.s.second, &Ping { n: p.n * 10 })
            .await?;
        let total = a.decode::<Pong>()?.n + b.decode::<Pong>()?.n;
        Ok(Some(AnyMessage::new(&Pong {
            n: total,
            by: "chain".into(),
        })?))
    }

    async fn on_response(
        &self,
        ctx: &ProcessContext,
        reply: AsyncReply,
    ) -> HostResult<Option<AnyMessage>> {
        let pong = reply.result?.decode::<Pong>()?;
        ctx.with_state(|sum: &mut Sum| sum.0 += pong.n);
        Ok(None)
    }

    async fn on_complete(&self, ctx: &ProcessContext) -> HostResult<Option<AnyMessage>> {
        if !self.s.asynchronous {
            return Ok(None);
        }
        // The request is there too, e.g. to build the reply from it.
        assert!(ctx.request().is_some_and(|r| r.is::<Ping>()));
        let total = ctx.with_state(|sum: &mut Sum| sum.0);
        Ok(Some(AnyMessage::new(&Pong {
            n: total,
            by: "chain-async".into(),
        })?))
    }

    async fn on_tear_down(&self, _ctx: &HostContext) {
        counters(&self.s.tag)
            .tear_downs
            .fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickerSettings {
    pub target: String,
    /// How many Pings to send in all (one per call).
    pub count: i64,
    #[serde(default = "default_interval")]
    pub call_interval_ms: u64,
    #[serde(default)]
    pub tag: String,
}

fn default_interval() -> u64 {
    10
}

/// An inbound-adapter service: one Ping per call, `count` in all.
pub struct Ticker {
    s: TickerSettings,
    sent: i64,
}

impl BusinessService for Ticker {
    const CLASS: &'static str = "test-ticker";
    type Settings = TickerSettings;

    fn targets() -> Vec<Target> {
        vec![Target::sends::<Ping>("target")]
    }

    fn new(s: TickerSettings, _ctx: &HostContext) -> HostResult<Self> {
        Ok(Ticker { s, sent: 0 })
    }

    fn call_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.s.call_interval_ms))
    }

    async fn on_process_input(&mut self, ctx: &ServiceContext) -> HostResult<()> {
        if self.sent >= self.s.count {
            return Ok(());
        }
        self.sent += 1;
        ctx.send_request_sync(&self.s.target, &Ping { n: self.sent })
            .await?;
        counters(&self.s.tag).handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn on_tear_down(&mut self, _ctx: &ServiceContext) {
        counters(&self.s.tag)
            .tear_downs
            .fetch_add(1, Ordering::SeqCst);
    }
}

request_set! {
    pub enum AlertOnly { Alert(interop::message::AlertRequest) }
}

/// Keeps the alerts it is sent.
pub struct AlertSink;

pub fn alerts_received() -> &'static Mutex<Vec<interop::message::AlertRequest>> {
    static ALERTS: OnceLock<Mutex<Vec<interop::message::AlertRequest>>> = OnceLock::new();
    ALERTS.get_or_init(Default::default)
}

impl BusinessOperation for AlertSink {
    const CLASS: &'static str = "test-alerts";
    type Settings = ChainlessSettings;
    type Request = AlertOnly;
    fn new(_: ChainlessSettings, _: &HostContext) -> HostResult<Self> {
        Ok(AlertSink)
    }
    async fn on_message(&mut self, _: &MessageContext, r: AlertOnly) -> HostResult<AnyMessage> {
        let AlertOnly::Alert(a) = r;
        alerts_received().lock().unwrap().push(a);
        AnyMessage::new(&Ack {})
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainlessSettings {}

/// A class whose target setting is misspelt: validation must say so.
pub struct Typo;

impl BusinessProcess for Typo {
    const CLASS: &'static str = "test-typo";
    type Settings = ChainSettings;
    type Request = PingOnly;
    fn targets() -> Vec<Target> {
        vec![Target::sends::<Ping>("frist")]
    }
    fn new(_: ChainSettings, _: &HostContext) -> HostResult<Self> {
        Ok(Typo)
    }
    async fn on_request(&self, _: &ProcessContext, _: PingOnly) -> HostResult<Option<AnyMessage>> {
        Ok(None)
    }
}

pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.message::<Pong>().message::<Other>();
    r.operation::<Echo>()
        .process::<Chain>()
        .service::<Ticker>()
        .operation::<AlertSink>()
        .process::<Typo>();
    r
}

//! Messages: plain serde types with a stable type name, carried between items as
//! [`AnyMessage`] (type name + JSON), the same form the message store keeps.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::HostError;

/// A message type that items exchange. The type name is what the store, the trace and
/// test-send use to find the type again, so it must never change once messages exist.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// Stable name, e.g. `"FormationRequest"`.
    const TYPE_NAME: &'static str;

    /// A sample value, shown pre-filled in the portal's test page.
    fn example() -> Option<Self> {
        None
    }
}

/// A message whose concrete type is known only by name: what travels between items,
/// what is persisted and what an operator sends from the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnyMessage {
    type_name: Arc<str>,
    json: Arc<str>,
}

impl AnyMessage {
    /// Serialize a typed message.
    pub fn new<M: Message>(message: &M) -> Result<Self, HostError> {
        let json = serde_json::to_string(message)
            .map_err(|e| HostError::new(format!("cannot serialize {}: {e}", M::TYPE_NAME)))?;
        Ok(Self {
            type_name: Arc::from(M::TYPE_NAME),
            json: Arc::from(json),
        })
    }

    /// A message from its type name and JSON text, as read back from the store or
    /// received by the API. The JSON is not checked here; [`MessageTypes::check`] does.
    pub fn from_json(type_name: impl Into<Arc<str>>, json: impl Into<Arc<str>>) -> Self {
        Self {
            type_name: type_name.into(),
            json: json.into(),
        }
    }

    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn is<M: Message>(&self) -> bool {
        &*self.type_name == M::TYPE_NAME
    }

    /// Decode into `M`; a wrong type or a body that does not fit is an error naming both.
    pub fn decode<M: Message>(&self) -> Result<M, HostError> {
        if !self.is::<M>() {
            return Err(HostError::new(format!(
                "expected a {} message, got {}",
                M::TYPE_NAME,
                self.type_name
            )));
        }
        serde_json::from_str(&self.json)
            .map_err(|e| HostError::new(format!("invalid {} body: {e}", M::TYPE_NAME)))
    }

    /// The body as a JSON value, for display.
    pub fn body_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.json).unwrap_or(serde_json::Value::Null)
    }
}

/// The empty reply a host gives when it has nothing to say but "done".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Ack {}

impl Message for Ack {
    const TYPE_NAME: &'static str = "Ack";
    fn example() -> Option<Self> {
        Some(Ack {})
    }
}

/// An alert raised by an item (error reply, restart, failure timeout), sent to the
/// production's `alert_target` when one is set (IRIS `Ens.AlertRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AlertRequest {
    /// The item the alert is about.
    pub source: String,
    pub text: String,
    /// The session it happened in, when there is one.
    pub session_id: Option<i64>,
    /// When it was raised (RFC 3339).
    pub time: String,
    /// Alerts of the same item not sent during the grace period before this one.
    pub suppressed: u64,
}

impl Message for AlertRequest {
    const TYPE_NAME: &'static str = "AlertRequest";
    fn example() -> Option<Self> {
        Some(AlertRequest {
            source: "PostgresOperation".into(),
            text: "connect to 127.0.0.1:5432 failed".into(),
            session_id: Some(1),
            time: "2026-12-03T16:45:24.123456Z".into(),
            suppressed: 0,
        })
    }
}

type CheckFn = fn(&str) -> Result<(), String>;
type ExampleFn = fn() -> Option<serde_json::Value>;

struct TypeEntry {
    /// The Rust type behind the name, to catch two types claiming one name.
    rust_type: &'static str,
    check: CheckFn,
    example: ExampleFn,
}

/// Every message type the production knows, by name: turns a type name plus JSON body
/// back into a checked message (test-send, resend, recovery).
#[derive(Default)]
pub struct MessageTypes {
    types: BTreeMap<&'static str, TypeEntry>,
}

impl MessageTypes {
    pub fn register<M: Message>(&mut self) {
        fn check<M: Message>(json: &str) -> Result<(), String> {
            serde_json::from_str::<M>(json)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        fn example<M: Message>() -> Option<serde_json::Value> {
            M::example().and_then(|m| serde_json::to_value(m).ok())
        }
        let rust_type = std::any::type_name::<M>();
        if let Some(existing) = self.types.get(M::TYPE_NAME) {
            // Two types under one name would decode each other's bodies: a programming
            // error to stop at start-up, naming both.
            assert!(
                existing.rust_type == rust_type,
                "message type name '{}' is claimed by both {} and {}",
                M::TYPE_NAME,
                existing.rust_type,
                rust_type
            );
        }
        self.types.insert(
            M::TYPE_NAME,
            TypeEntry {
                rust_type,
                check: check::<M>,
                example: example::<M>,
            },
        );
    }

    pub fn contains(&self, type_name: &str) -> bool {
        self.types.contains_key(type_name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types.keys().copied()
    }

    pub fn example(&self, type_name: &str) -> Option<serde_json::Value> {
        self.types.get(type_name).and_then(|t| (t.example)())
    }

    /// Build a message from a type name and a JSON body, refusing unknown types and
    /// bodies that do not decode as that type.
    pub fn check(&self, type_name: &str, body: &serde_json::Value) -> Result<AnyMessage, String> {
        let entry = self
            .types
            .get(type_name)
            .ok_or_else(|| format!("unknown message type '{type_name}'"))?;
        let json = body.to_string();
        (entry.check)(&json).map_err(|e| format!("invalid {type_name} body: {e}"))?;
        Ok(AnyMessage::from_json(type_name, json))
    }
}

/// A set of request types one host accepts, decoded in one step: the host matches on an
/// enum, so forgetting a type is a compile error, and the production knows the accepted
/// type names for `validate`. Build one with [`request_set!`](crate::request_set).
pub trait RequestSet: Sized + 'static {
    fn type_names() -> Vec<&'static str>;
    fn register_types(types: &mut MessageTypes);
    fn decode(message: &AnyMessage) -> Result<Self, HostError>;
}

/// Declare the request types a host accepts as an enum:
///
/// ```
/// use interop::{request_set, Message};
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// struct Ping { n: u32 }
/// impl Message for Ping { const TYPE_NAME: &'static str = "Ping"; }
///
/// request_set! {
///     /// What the echo operation accepts.
///     pub enum EchoRequest { Ping(Ping) }
/// }
/// ```
#[macro_export]
macro_rules! request_set {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident($ty:ty)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name { $($variant($ty)),+ }

        impl $crate::RequestSet for $name {
            fn type_names() -> Vec<&'static str> {
                vec![$(<$ty as $crate::Message>::TYPE_NAME),+]
            }
            fn register_types(types: &mut $crate::MessageTypes) {
                $(types.register::<$ty>();)+
            }
            fn decode(message: &$crate::AnyMessage) -> Result<Self, $crate::HostError> {
                $(
                    if message.is::<$ty>() {
                        return message.decode::<$ty>().map($name::$variant);
                    }
                )+
                Err($crate::HostError::unexpected_type(message.type_name(), &Self::type_names()))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct One {}
    impl Message for One {
        const TYPE_NAME: &'static str = "Same";
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Two {}
    impl Message for Two {
        const TYPE_NAME: &'static str = "Same";
    }

    #[test]
    #[should_panic(expected = "message type name 'Same' is claimed by both")]
    fn two_types_cannot_share_a_name() {
        let mut types = MessageTypes::default();
        types.register::<One>();
        types.register::<One>(); // the same type again is fine
        types.register::<Two>();
    }

    #[test]
    fn a_body_is_checked_against_its_type() {
        let mut types = MessageTypes::default();
        types.register::<Ack>();
        assert!(types.check("Ack", &serde_json::json!({})).is_ok());
        assert!(types
            .check("Nope", &serde_json::json!({}))
            .unwrap_err()
            .contains("unknown"));
    }
}

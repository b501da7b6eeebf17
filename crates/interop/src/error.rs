//! Errors at the framework's boundaries. Each says what failed and where.

use thiserror::Error;

/// An error a host returns from a handler: it becomes an error reply, persisted and
/// visible in the trace. Keep the text specific (what, where, why).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct HostError {
    pub message: String,
}

impl HostError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    pub fn unexpected_type(type_name: &str, accepted: &[&str]) -> Self {
        Self::new(format!(
            "unexpected message type '{type_name}' (accepts: {})",
            accepted.join(", ")
        ))
    }
}

impl From<SendError> for HostError {
    fn from(e: SendError) -> Self {
        HostError::new(e.to_string())
    }
}

impl From<StoreError> for HostError {
    fn from(e: StoreError) -> Self {
        HostError::new(e.to_string())
    }
}

/// Why a request to another item did not get a normal reply.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("no item named '{0}' in this production")]
    UnknownTarget(String),
    #[error("item '{0}' is disabled")]
    TargetDisabled(String),
    #[error("item '{0}' is not running")]
    TargetStopped(String),
    #[error("no reply from '{target}' within {timeout_ms} ms")]
    Timeout { target: String, timeout_ms: u64 },
    #[error("'{target}' replied with an error: {message}")]
    ErrorReply { target: String, message: String },
    #[error("message store: {0}")]
    Store(String),
    #[error("the production is stopping")]
    ShuttingDown,
    /// A keyed input that was already accepted (see `ServiceContext::send_request_keyed`).
    #[error("an input with key '{0}' was already accepted")]
    Duplicate(String),
}

impl SendError {
    /// Whether the request reached the message store before it failed, so its session
    /// has a trace to show (error replies and timeouts); refusals before that have none.
    pub fn reached_store(&self) -> bool {
        matches!(
            self,
            SendError::ErrorReply { .. } | SendError::Timeout { .. }
        )
    }
}

/// A failure of the message store or the embedded database.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("embedded database {path}: {message}")]
    Open { path: String, message: String },
    #[error("embedded database write failed: {0}")]
    Write(String),
    #[error("embedded database query failed: {0}")]
    Query(String),
    #[error("message store is closed")]
    Closed,
    #[error("an input with key '{0}' was already accepted")]
    Duplicate(String),
}

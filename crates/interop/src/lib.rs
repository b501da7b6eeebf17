//! interop: the framework of interop-rs, InterSystems-IRIS-style interoperability
//! productions in Rust.
//!
//! A production is a configured graph of named business hosts (services, processes,
//! operations) that pass typed, persisted messages. This crate holds what every host
//! crate is written against: [`Message`]s, the three host traits, the class
//! [`Registry`], the configuration, the message store, and the [`Production`] runtime
//! that runs each item as Actix actors and routes requests between them by item name.

pub mod config;
pub mod error;
pub mod host;
pub mod message;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod testing;

pub use config::{ConfigError, ItemConfig, ProductionConfig};
pub use error::{HostError, SendError, StoreError};
pub use host::{
    blocking, AsyncReply, BusinessOperation, BusinessProcess, BusinessService, HostContext,
    HostKind, HostResult, MessageContext, ProcessContext, ServiceContext, Target,
};
pub use message::{Ack, AlertRequest, AnyMessage, Message, MessageTypes, RequestSet};
pub use registry::{ClassInfo, Registry};
pub use runtime::{ItemState, ItemView, Production, StartError, UpdateReport};
pub use store::{EmbeddedDb, Level};

/// What a host crate usually needs.
pub mod prelude {
    pub use crate::{
        blocking, request_set, Ack, AnyMessage, AsyncReply, BusinessOperation, BusinessProcess,
        BusinessService, HostContext, HostError, HostResult, Message, MessageContext,
        ProcessContext, Registry, SendError, ServiceContext, Target,
    };
    pub use serde::{Deserialize, Serialize};
}

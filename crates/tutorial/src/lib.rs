//! tutorial: the business hosts written in `docs/tutorial.md`, the formation tutorial in
//! Rust. Each is the smallest version of a shipped class (a file operation, an
//! embedded-database operation, a router with sync and with async requests, a polling
//! CSV service), registered under a `tutorial-*` class name so that any item of a
//! production can run it instead of the shipped one. [`doc_sync`] keeps every code block
//! of the tutorial equal to this code.

pub mod async_router;
pub mod doc_sync;
pub mod file_operation;
pub mod iris_operation;
pub mod router;
pub mod service;

use interop::{HostError, HostResult, Registry};

// ANCHOR: blocking
/// Run blocking work (file I/O) on Tokio's blocking pool, off the single-threaded
/// arbiter that runs the items.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> HostResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HostError::new(format!("blocking task failed: {e}")))
}
// ANCHOR_END: blocking

// ANCHOR: register
/// Register the tutorial's classes and the messages they use.
pub fn register(registry: &mut Registry) {
    formation_messages::register(registry);
    registry
        .operation::<file_operation::FileOperation>()
        .operation::<iris_operation::IrisOperation>()
        .process::<router::Router>()
        .process::<async_router::AsyncRouter>()
        .service::<service::CsvService>();
}

/// Every class of the `production` binary, plus the tutorial's.
pub fn registry() -> Registry {
    let mut registry = production::registry();
    register(&mut registry);
    registry
}
// ANCHOR_END: register

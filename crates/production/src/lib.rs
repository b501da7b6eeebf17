//! The `production` crate: the binary that runs a production. It registers every host
//! class of the workspace by name, starts the production described by a config file,
//! serves the HTTP faces (REST service routes, management API, portal) on the
//! `[production] http` address, and gives the operator a CLI over that API.

pub mod api;
pub mod cli;
pub mod scaffold;
pub mod server;

use interop::Registry;

/// Every class this binary can run. A new host crate adds its `register` here
/// (`production new` adds it as the last call, before the final `registry`).
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    formation_messages::register(&mut registry);
    op_file::register(&mut registry);
    op_iris::register(&mut registry);
    proc_router::register(&mut registry);
    svc_csv::register(&mut registry);
    op_postgres::register(&mut registry);
    svc_rest::register(&mut registry);
    registry
}

//! The production's HTTP faces end to end: a real production on a temp config, real
//! HTTP on a free port. One test binary (one link) for the REST service, the management
//! API, `/metrics`, OpenAPI, the token, hot update under load and the CLI.

mod cli;
mod helpers;
mod management;
mod training;
mod update;

//! regate: a registry auth gateway.
//!
//! A request travels one pipeline: [`route`] parses the OCI URL, [`identity`] finds who is
//! calling, [`access`] turns the request into RBAC checks that the [`authority`] decides
//! through the [`cache`], and [`proxy`] streams what is allowed to the registry.
//! [`server`] wires the pipeline into an HTTP service; [`cli`] is the operator's front end.

pub mod access;
pub mod audit;
pub mod authority;
pub mod batch;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod connections;
pub mod error;
pub mod fs;
pub mod identity;
pub mod logs;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod server;
pub mod shell;
pub mod suggest;
pub mod tls;
pub mod token;
pub mod upstream;

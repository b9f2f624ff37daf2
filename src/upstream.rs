//! Credentials toward secured registries (docs/behaviour.md §8): docker config files (pull
//! secrets) and answering a registry's own challenges.
//!
//! [`keyring`] parses `.dockerconfigjson`/`.dockercfg` documents and picks the entries for an
//! image the way the kubelet does; [`pull_secret`] keeps the global pull-secret file loaded and
//! follows edits to it; [`auth`] turns a registry's `WWW-Authenticate` challenge into the
//! `Authorization` regate sends it (Basic, or a Bearer token fetched from the realm and cached).
//! The client's own `Authorization` never leaves regate: what is sent upstream is built here.

pub mod auth;
pub mod keyring;
pub mod pull_secret;
pub mod secret;

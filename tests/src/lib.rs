//! Test kit for pgnotify (being written).

pub mod proxy;
pub mod server;
pub mod sim;

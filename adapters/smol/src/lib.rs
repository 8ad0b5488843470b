//! pgnotify on smol.
//!
//! This crate will implement the `pgnotify-driver` Runtime trait for smol (TCP
//! and unix sockets, TLS with rustls, timers, spawning) and re-export the
//! `Listener` API. Nothing is implemented yet: it is an empty library until
//! the adapters issue lands.

//! pgnotify on async-std.
//!
//! async-std has been discontinued upstream and points its users to smol;
//! this adapter stays, thin, for code that still runs on it. Prefer `pgnotify-smol`.
//!
//! This crate will implement the `pgnotify-driver` Runtime trait for async-std (TCP
//! and unix sockets, TLS with rustls, timers, spawning) and re-export the
//! `Listener` API. Nothing is implemented yet: it is an empty library until
//! the adapters issue lands.

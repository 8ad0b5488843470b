//! Runtime-agnostic async glue for pgnotify.
//!
//! This crate will hold `Listener`, `Subscription` and the task that owns the
//! socket, generic over a small `Runtime` trait (connect, TLS upgrade, timer,
//! spawn). Nothing is implemented yet: it is an empty library until the
//! adapters issue lands.

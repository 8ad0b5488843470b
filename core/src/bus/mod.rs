//! The bus: many subscribers over one connection (being written).

mod backoff;
pub mod policy;
mod queue;
mod registry;

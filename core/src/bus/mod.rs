//! The bus: many subscribers over one connection (being written).

pub mod policy;

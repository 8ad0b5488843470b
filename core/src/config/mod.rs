//! Connection configuration (being written).

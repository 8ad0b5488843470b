//! One physical PostgreSQL connection as a pure state machine (being written).

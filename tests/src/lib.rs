//! Test kit for pgnotify (being written).

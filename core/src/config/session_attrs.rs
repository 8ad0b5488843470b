//! [`TargetSessionAttrs`]: which of several hosts is acceptable.

use std::fmt;
use std::str::FromStr;

use super::error::ConfigError;

/// Which servers a multi-host configuration may settle on (libpq's
/// `target_session_attrs`).
///
/// Only `any` and `read-write` exist here: LISTEN and NOTIFY fail on a hot
/// standby, so libpq's `read-only`, `standby` and `prefer-standby` could only
/// pick servers pgnotify cannot use, and are refused with an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TargetSessionAttrs {
    /// The first server that accepts the connection (the default).
    #[default]
    Any,
    /// Only a server that accepts writes; standbys are skipped.
    ReadWrite,
}

impl TargetSessionAttrs {
    /// The value's name in a connection string.
    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
        }
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TargetSessionAttrs {
    type Err = ConfigError;

    /// Parses a libpq `target_session_attrs` value; the error names the
    /// parameter.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const NAME: &str = "target_session_attrs";
        match s {
            "any" => Ok(Self::Any),
            "read-write" => Ok(Self::ReadWrite),
            "read-only" | "primary" | "standby" | "prefer-standby" => Err(ConfigError::invalid(
                NAME,
                s,
                "pgnotify needs a server that accepts LISTEN and NOTIFY; use any or read-write",
            )),
            _ => Err(ConfigError::invalid(NAME, s, "expected any or read-write")),
        }
    }
}

//! [`TransactionPooler`]: what to do once a transaction-pooling proxy is
//! detected.

use std::fmt;
use std::str::FromStr;

use super::error::ConfigError;

/// What the listener does when its first ping shows that LISTEN and NOTIFY
/// land on different server sessions, the mark of a transaction-pooling
/// proxy such as PgBouncer in `pool_mode=transaction`
/// ([`BusError::NotificationsNotDelivered`](crate::bus::BusError::NotificationsNotDelivered)).
///
/// LISTEN cannot work through such a proxy, and reconnecting does not
/// change that: by default the listener stops and reports the error, rather
/// than reconnecting forever while delivering nothing. Publishing through a
/// transaction pooler works (each publish is self-contained).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransactionPooler {
    /// Stop: every subscriber ends with
    /// [`EndReason::Failed`](crate::EndReason::Failed) (the default).
    #[default]
    Fail,
    /// Keep reconnecting with backoff, as for any lost connection (for a
    /// proxy whose pool mode an operator is about to change).
    Retry,
}

impl TransactionPooler {
    /// The value's name in a connection string.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Retry => "retry",
        }
    }
}

impl fmt::Display for TransactionPooler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TransactionPooler {
    type Err = ConfigError;

    /// Parses a `transaction_pooler` value; the error names the parameter.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail" => Ok(Self::Fail),
            "retry" => Ok(Self::Retry),
            _ => Err(ConfigError::invalid(
                "transaction_pooler",
                s,
                "expected fail or retry",
            )),
        }
    }
}

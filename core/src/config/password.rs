//! The password, held so that `Debug` never shows it.

use std::fmt;

use super::error::REDACTED;

/// A password as given; its `Debug` prints `"<redacted>"`.
///
/// Holding it in this type lets `Config` and `ConfigBuilder` derive `Debug`
/// without either of them leaking it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Password(String);

impl Password {
    pub(crate) fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(REDACTED, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_redacted_not_the_password() {
        let shown = format!("{:?}", Some(Password::new("s3cret")));
        assert_eq!(shown, r#"Some("<redacted>")"#);
    }
}

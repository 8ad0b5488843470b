//! [`ServiceFile`]: libpq's connection service file (`pg_service.conf`),
//! parsed from text the driver read (the core reads no files).

use std::fmt;

/// The services of one libpq service file.
///
/// The format is libpq's: `[name]` starts a service, `key=value` lines
/// (whitespace around the line ignored) give its parameters, and blank
/// lines and lines starting with `#` are skipped. A service's parameters
/// are defaults for a connection string that says `service=name` (or an
/// environment with `PGSERVICE`): what the string gives wins, and the PG*
/// variables fill in only what neither gives.
///
/// ```
/// use pgnotify_core::config::{Config, ServiceFile};
/// let file = ServiceFile::parse("[orders]\nhost=db1\ndbname=orders\n")?;
/// let config = Config::parse_with_services("service=orders user=app", [("PGHOST", "x")], &[file])?;
/// assert_eq!(config.dbname(), "orders");
/// assert_eq!(config.hosts()[0].to_string(), "db1:5432");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServiceFile {
    services: Vec<(String, Vec<(String, String)>)>,
}

/// A line of a service file that is neither a section, a parameter, a
/// comment nor blank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFileError {
    /// The 1-based line number.
    pub line: usize,
}

impl fmt::Display for ServiceFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "syntax error in the service file at line {}: expected [name] or key=value",
            self.line
        )
    }
}

impl std::error::Error for ServiceFileError {}

impl ServiceFile {
    /// Parses a service file's text.
    pub fn parse(text: &str) -> Result<Self, ServiceFileError> {
        let mut services: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = ServiceFileError { line: index + 1 };
            if let Some(name) = line.strip_prefix('[') {
                let name = name.strip_suffix(']').ok_or(error)?;
                services.push((name.to_owned(), Vec::new()));
                continue;
            }
            let (key, value) = line.split_once('=').ok_or(error.clone())?;
            // Parameters before the first section belong to no service.
            if let Some((_, params)) = services.last_mut() {
                params.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
        Ok(Self { services })
    }

    /// The parameters of service `name`, in file order, if the file
    /// defines it.
    pub fn service(&self, name: &str) -> Option<&[(String, String)]> {
        self.services
            .iter()
            .find(|(service, _)| service == name)
            .map(|(_, params)| params.as_slice())
    }
}

impl fmt::Debug for ServiceFile {
    /// The service names only: a service may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.services.iter().map(|(name, _)| name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_parameters_comments_and_errors() {
        let file = ServiceFile::parse(
            "ignored=before any section\n\
             # comment\n\
             [a]\n  host = db1 \n\
             \n\
             [b]\nport=6432\npassword=s=cret\n",
        )
        .unwrap();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(file.service("a"), Some(&pairs(&[("host", "db1")])[..]));
        assert_eq!(
            file.service("b"),
            Some(&pairs(&[("port", "6432"), ("password", "s=cret")])[..])
        );
        assert_eq!(file.service("c"), None);
        assert_eq!(format!("{file:?}"), r#"["a", "b"]"#);
        assert_eq!(
            ServiceFile::parse("[a]\nno equals sign\n"),
            Err(ServiceFileError { line: 2 })
        );
        assert_eq!(
            ServiceFile::parse("[a\n"),
            Err(ServiceFileError { line: 1 })
        );
    }
}

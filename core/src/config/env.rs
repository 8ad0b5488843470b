//! The PG* environment variables, read from a map the caller hands over.

/// The environment variables pgnotify takes defaults from, with the
/// parameter each one stands for. Other variables are ignored.
///
/// `USER` and then `LOGNAME` are also consulted for the user name when
/// neither `user` nor `PGUSER` gives one, as libpq uses the operating-system
/// user.
pub const ENV_VARIABLES: [(&str, &str); 16] = [
    ("PGSERVICE", "service"),
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGDATABASE", "dbname"),
    ("PGAPPNAME", "application_name"),
    ("PGOPTIONS", "options"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
];

/// The defaults found in one environment.
#[derive(Default)]
pub(crate) struct EnvDefaults {
    /// `(variable, parameter, value)`, in [`ENV_VARIABLES`] order.
    pub(crate) params: Vec<(&'static str, &'static str, String)>,
    /// The operating-system user (`USER`, else `LOGNAME`).
    pub(crate) os_user: Option<String>,
}

impl EnvDefaults {
    /// Picks the variables pgnotify knows out of `env`; when one appears
    /// twice, the last wins.
    pub(crate) fn collect<K, V>(env: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut found: [Option<String>; ENV_VARIABLES.len()] = Default::default();
        let (mut user, mut logname) = (None, None);
        for (key, value) in env {
            let (key, value) = (key.as_ref(), value.as_ref());
            match key {
                "USER" => user = Some(value.to_owned()),
                "LOGNAME" => logname = Some(value.to_owned()),
                _ => {
                    if let Some(i) = ENV_VARIABLES.iter().position(|(var, _)| *var == key) {
                        found[i] = Some(value.to_owned());
                    }
                }
            }
        }
        let params = ENV_VARIABLES
            .iter()
            .zip(found)
            .filter_map(|(&(var, param), value)| Some((var, param, value?)))
            .collect();
        let os_user = user.or(logname).filter(|u| !u.is_empty());
        Self { params, os_user }
    }
}

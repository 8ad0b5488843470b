//! What every example needs: a database to listen on.
//!
//! The URL comes from the first command-line argument, else `DATABASE_URL`.
//! With neither, the example starts a throwaway PostgreSQL from the machine's
//! own binaries (the test kit's server), so `cargo run --example NAME` works
//! on a machine with PostgreSQL installed and nothing configured.

use pgnotify_throwaway::server::TestServer;

/// A database URL, and the throwaway server behind it if one was started.
pub(crate) struct Database {
    /// A libpq URL or `key=value` string.
    pub(crate) url: String,
    /// Stops and removes the throwaway server when dropped.
    _server: Option<TestServer>,
}

impl Database {
    /// Whether the example started its own server (so nobody else will
    /// publish on it).
    #[allow(dead_code)] // not every example asks
    pub(crate) fn is_throwaway(&self) -> bool {
        self._server.is_some()
    }
}

/// The database the example should use; exits with a message if it can
/// neither find one nor start one.
pub(crate) fn database() -> Database {
    let given = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok());
    if let Some(url) = given {
        return Database { url, _server: None };
    }
    eprintln!("no database URL given (argument or DATABASE_URL): starting a throwaway PostgreSQL");
    match TestServer::new() {
        Ok(server) => {
            eprintln!("throwaway server at {}", server.url());
            Database {
                url: server.url(),
                _server: Some(server),
            }
        }
        Err(e) => {
            eprintln!("could not start a throwaway server: {e}");
            eprintln!("give a database URL as the first argument or in DATABASE_URL");
            std::process::exit(1);
        }
    }
}

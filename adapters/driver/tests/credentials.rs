//! libpq's credential files against a real PostgreSQL that asks for a
//! password, on every runtime: the password file (`passfile`,
//! `PGPASSFILE`) with its wildcards and escapes, and libpq's refusal of a
//! file others can read (issue 15).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pgnotify_core::Config;
use pgnotify_driver::{BusError, ListenerError};
use pgnotify_testkit::server::{AuthMethod, TestServer};
use support::{Listener, fast, listen, on_each_runtime, within};

/// A password with the characters a password file must escape.
const PASSWORD: &str = r"pa:ss\word";

/// Writes `text` into a fresh file with `mode`, in a directory of the test's own.
fn file(name: &str, text: &str, mode: u32) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgnotify-credentials-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn server() -> TestServer {
    TestServer::builder()
        .auth(AuthMethod::ScramSha256)
        .user("alice", PASSWORD)
        .start()
        .expect("a server asking for passwords")
}

/// A URL for alice with no password, plus `extra` parameters.
fn url(server: &TestServer, extra: &str) -> String {
    format!(
        "postgres://alice@127.0.0.1:{}/postgres?sslmode=disable{extra}",
        server.port()
    )
}

#[test]
fn a_password_file_with_wildcards_and_escapes_logs_in() {
    let server = server();
    let entries = format!(
        "# other servers first\n\
         otherhost:*:*:alice:wrong\n\
         127.0.0.1:{}:*:bob:wrong\n\
         127.0.0.1:*:postgres:alice:pa\\:ss\\\\word\n",
        server.port()
    );
    let passfile = file("pgpass", &entries, 0o600);
    let (server, passfile) = (&server, &passfile);
    on_each_runtime(|rt| async move {
        let rt = &rt;
        // By the passfile parameter.
        let by_param = url(server, &format!("&passfile={}", passfile.display()));
        let config = fast(Config::parse(&by_param).expect("a valid URL"));
        assert_eq!(config.password(), None);
        listen(rt, config).await.close().await;
        // By PGPASSFILE.
        let env = [("PGPASSFILE", passfile.display().to_string())];
        let config = Config::parse_with_env(&url(server, ""), env).expect("a valid URL");
        assert_eq!(config.passfile(), Some(passfile.as_path()));
        listen(rt, fast(config)).await.close().await;
    });
}

#[test]
fn a_password_file_others_can_read_is_ignored_as_libpq_does() {
    let server = server();
    let passfile = file("pgpass-loose", "*:*:*:alice:pa\\:ss\\\\word\n", 0o644);
    let (server, passfile) = (&server, &passfile);
    on_each_runtime(|rt| async move {
        let config = Config::parse(&url(server, &format!("&passfile={}", passfile.display())))
            .expect("a valid URL");
        let result = within(
            &rt,
            "the refused connect",
            Listener::builder(config).runtime(rt.clone()).connect(),
        )
        .await;
        match result {
            Err(ListenerError::Connect(BusError::Connection(e))) => {
                assert!(e.to_string().contains("password"), "{e}")
            }
            other => panic!("expected a missing password, got {other:?}"),
        }
    });
    let _ = std::fs::remove_file(Path::new(passfile));
}

//! The throwaway PgBouncer: it starts in front of a server in each pool mode, lets the
//! server's users through with their passwords, and leaves nothing behind.

use pgnotify_testkit::pooler::{PoolMode, TestPgBouncer, pgbouncer_or_skip};
use pgnotify_testkit::server::{AuthMethod, TestServer};

/// Runs `sql` through the pooler with psql; returns (success, stdout, stderr).
fn psql(pooler: &TestPgBouncer, password: Option<&str>, sql: &str) -> (bool, String, String) {
    let mut cmd = pooler.psql_command().expect("psql");
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    let output = cmd.args(["-c", sql]).output().expect("psql runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn each_pool_mode_passes_queries_through_with_the_servers_passwords_only() {
    if !pgbouncer_or_skip() {
        return;
    }
    let server = TestServer::builder()
        .auth(AuthMethod::ScramSha256)
        .user("alice", "s3cret")
        .start()
        .expect("a server");
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let pooler = TestPgBouncer::start(&server, mode).expect("pgbouncer starts");
        assert_eq!(pooler.mode(), mode);
        assert!(
            pooler
                .url()
                .starts_with("postgres://alice:s3cret@127.0.0.1:"),
            "{}",
            pooler.url()
        );
        let (ok, out, err) = psql(&pooler, None, "SELECT current_user");
        assert!(ok, "{mode:?}: {err}\npgbouncer log:\n{}", pooler.log());
        assert_eq!(out, "alice", "{mode:?}");
        let (ok, _, err) = psql(&pooler, Some("wrong"), "SELECT 1");
        assert!(!ok, "{mode:?}: a wrong password got through PgBouncer");
        // PgBouncer words it "SASL authentication failed".
        assert!(err.contains("authentication failed"), "{err}");
        // The server sees PgBouncer's connection, not psql's.
        let backends = server
            .execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'alice'")
            .expect("count");
        assert_ne!(backends, "0", "{mode:?}");
    }
}

#[test]
fn drop_stops_pgbouncer_and_frees_its_port() {
    if !pgbouncer_or_skip() {
        return;
    }
    let server = TestServer::new().expect("a server");
    let pooler = TestPgBouncer::start(&server, PoolMode::Session).expect("pgbouncer starts");
    let pid = pooler.pid().expect("running");
    let addr = pooler.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    println!("{}", pooler.version().expect("a version"));
    drop(pooler);
    let pid = libc::pid_t::try_from(pid).expect("pid fits");
    // SAFETY: signal 0 only checks for existence.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "pgbouncer {pid} outlived its TestPgBouncer");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "{addr} still accepts"
    );
}

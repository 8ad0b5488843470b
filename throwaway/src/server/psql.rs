//! Running administrative SQL through the `psql` that ships with the server binaries.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use super::error::{Error, Result};

/// A `psql` command with nothing from the environment or `~/.psqlrc` leaking in, set to stop at
/// the first error and print bare, unaligned rows.
pub(crate) fn base_command(psql: &Path) -> Command {
    let mut cmd = Command::new(psql);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| name.starts_with("PG")) {
            cmd.env_remove(name);
        }
    }
    cmd.env("LC_MESSAGES", "C")
        .env("PGCLIENTENCODING", "UTF8")
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"])
        .args(["--set", "ON_ERROR_STOP=1"]);
    cmd
}

/// Runs `sql` (any number of statements, each in its own transaction) with `cmd` reading it
/// from stdin, and returns what `psql` printed.
pub(crate) fn run(mut cmd: Command, sql: &str) -> Result<Vec<u8>> {
    cmd.args(["--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::io("run psql", e))?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let output = thread::scope(|scope| {
        // Written from a second thread so a large result cannot deadlock against a large input.
        scope.spawn(move || {
            let _ = stdin.write_all(sql.as_bytes());
        });
        child.wait_with_output()
    })
    .map_err(|e| Error::io("wait for psql", e))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        let mut message = String::from_utf8_lossy(&output.stderr).into_owned();
        if message.trim().is_empty() {
            message = format!("psql exited with {}", output.status);
        }
        Err(Error::Sql {
            sql: sql.to_owned(),
            message,
        })
    }
}

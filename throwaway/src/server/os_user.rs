//! The operating-system user PostgreSQL runs as, and handing files over to it.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::Path;

use super::error::{Error, Result};

/// The unprivileged user PostgreSQL runs as when the tests run as root.
pub const SERVER_OS_USER: &str = "postgres";

/// An operating-system account: the one `initdb` and `postgres` run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OsUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl OsUser {
    /// The account to drop to, or `None` when the process is not root and runs the server itself.
    pub(crate) fn for_server() -> Result<Option<Self>> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let passwd =
            fs::read_to_string("/etc/passwd").map_err(|e| Error::io("read /etc/passwd", e))?;
        lookup(&passwd, SERVER_OS_USER)
            .map(Some)
            .ok_or_else(|| Error::NoUnprivilegedUser {
                name: SERVER_OS_USER.to_owned(),
            })
    }
}

/// Finds `name` in the text of an `/etc/passwd` file.
fn lookup(passwd: &str, name: &str) -> Option<OsUser> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(OsUser { uid, gid })
    })
}

/// Creates `path` (and its parents) with `mode`, owned by `owner` when given.
pub(crate) fn create_private_dir(path: &Path, mode: u32, owner: Option<OsUser>) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("set the mode of {}", path.display()), e))?;
    give(path, owner)
}

/// Makes `owner` own `path` itself (not what is under it); nothing when `owner` is `None`.
pub(crate) fn give(path: &Path, owner: Option<OsUser>) -> Result<()> {
    let Some(owner) = owner else {
        return Ok(());
    };
    lchown(path, Some(owner.uid), Some(owner.gid))
        .map_err(|e| Error::io(format!("chown {}", path.display()), e))
}

/// Copies the tree at `from` to `to`, keeping modes, and makes `owner` own every copy.
pub(crate) fn copy_tree(from: &Path, to: &Path, owner: Option<OsUser>) -> Result<()> {
    let context = |e| Error::io(format!("copy {} to {}", from.display(), to.display()), e);
    let meta = fs::symlink_metadata(from).map_err(context)?;
    if meta.is_dir() {
        fs::create_dir(to).map_err(context)?;
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(context)?;
        for entry in fs::read_dir(from).map_err(context)? {
            let entry = entry.map_err(context)?;
            copy_tree(&entry.path(), &to.join(entry.file_name()), owner)?;
        }
    } else if meta.file_type().is_symlink() {
        let target = fs::read_link(from).map_err(context)?;
        std::os::unix::fs::symlink(target, to).map_err(context)?;
    } else {
        fs::copy(from, to).map_err(context)?;
    }
    give(to, owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reads_uid_and_gid_of_the_named_user() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgresql:x:7:7::/:/bin/false\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            lookup(passwd, "postgres"),
            Some(OsUser { uid: 101, gid: 104 })
        );
        assert_eq!(lookup(passwd, "nobody"), None);
    }
}

//! Privilege drop (DESIGN §8): started as root, sottod gives the data
//! directory to the service user, chroots into it and becomes that user for
//! good, before it accepts a single connection.
//!
//! Invariant: after `drop_root` returns, the real, effective and saved user
//! and group ids are the service user's, there are no supplementary groups,
//! the root directory is the data directory, and `setuid(0)` fails.

use std::path::Path;

use nix::unistd::{self, Gid, Uid, User};

/// Whether the process runs as root.
pub fn is_root() -> bool {
    unistd::geteuid().is_root()
}

/// Chowns `data` (recursively) to `user`, chroots into it and drops to `user`.
pub fn drop_root(user: &str, data: &Path) -> Result<(), String> {
    let account = User::from_name(user)
        .map_err(|e| format!("looking up user {user}: {e}"))?
        .ok_or_else(|| format!("no such user `{user}` (pass --user NAME of an unprivileged account)"))?;
    if account.uid.is_root() {
        return Err(format!("--user {user} is root; sottod does not serve as root"));
    }
    chown_tree(data, account.uid, account.gid)?;
    unistd::chroot(data).map_err(|e| format!("chroot {}: {e}", data.display()))?;
    unistd::chdir("/").map_err(|e| format!("chdir / in the chroot: {e}"))?;
    // Groups first, then the group, then the user: each later step needs the privilege the earlier keeps.
    unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    unistd::setresgid(account.gid, account.gid, account.gid).map_err(|e| format!("setresgid: {e}"))?;
    unistd::setresuid(account.uid, account.uid, account.uid).map_err(|e| format!("setresuid: {e}"))?;
    if unistd::setuid(Uid::from_raw(0)).is_ok() || unistd::geteuid().is_root() {
        return Err("privilege drop failed: root could be regained".into());
    }
    Ok(())
}

/// Gives every entry under `dir` (no symlinks followed) to `uid:gid`.
fn chown_tree(dir: &Path, uid: Uid, gid: Gid) -> Result<(), String> {
    let chown = |p: &Path| {
        unistd::fchownat(None, p, Some(uid), Some(gid), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| format!("chown {}: {e}", p.display()))
    };
    chown(dir)?;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            chown(&path)?;
        }
    }
    Ok(())
}

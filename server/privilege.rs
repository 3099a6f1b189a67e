//! Privilege drop (DESIGN §8): started as root, sottod gives the data
//! directory to the service user, chroots into it and becomes that user for
//! good, before it accepts a single connection.
//!
//! Invariant: after `drop_root` returns, the real, effective and saved user
//! and group ids are the service user's, there are no supplementary groups,
//! the root directory is the data directory, and `setuid(0)` fails. While it
//! still runs as root, it never follows a symbolic link inside the data
//! directory and changes the owner only of the very inode it inspected: the
//! tree is walked through directory descriptors (`openat` with `O_NOFOLLOW`),
//! and each owner changed through a descriptor of the entry (`fchown`,
//! `fchownat(fd, "", AT_EMPTY_PATH)`), never through a path that the service
//! user (who may own the directory from an earlier start) could swap for a
//! link between a check and the change.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::unistd::{self, Gid, Uid, User};

/// The service account sottod drops to by default.
pub const DEFAULT_USER: &str = "sotto";

/// How deep the walk goes; the store has two levels (DESIGN §8), so deeper
/// means something planted a tree to exhaust descriptors.
const MAX_DEPTH: usize = 8;

/// Whether the process runs as root.
pub fn is_root() -> bool {
    unistd::geteuid().is_root()
}

/// Chowns `data` (recursively, links never followed) to `user`, chroots into it and drops to `user`.
pub fn drop_root(user: &str, data: &Path) -> Result<(), String> {
    let account = User::from_name(user).map_err(|e| format!("looking up user {user}: {e}"))?.ok_or_else(|| {
        format!(
            "no such user `{user}`: create the service account with `useradd --system --home-dir /var/lib/sotto --shell /usr/sbin/nologin {user}`, or pass --user NAME of another unprivileged account"
        )
    })?;
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

/// `openat(dir, name, flags)` as an owned descriptor.
fn open_at(dir: libc::c_int, name: &CString, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; the result is checked before it is owned.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat` of an open descriptor.
fn stat_of(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to overwrite; `fd` is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// Changes the owner of the inode `fd` refers to (works on `O_PATH` descriptors too).
fn chown_fd(fd: &OwnedFd, uid: Uid, gid: Gid) -> std::io::Result<()> {
    // SAFETY: an empty C string with AT_EMPTY_PATH names `fd` itself; no path is resolved.
    let rc = unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid.as_raw(), gid.as_raw(), libc::AT_EMPTY_PATH) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives `data` and everything under it to `uid:gid`, as the module says:
/// through descriptors, following no link. Symbolic links (which nothing in
/// the store makes) are left alone; a file with more than one link is
/// refused, since a hard link could name a file outside the data directory.
fn chown_tree(data: &Path, uid: Uid, gid: Gid) -> Result<(), String> {
    let shown = data.display();
    let path = CString::new(data.as_os_str().as_bytes()).map_err(|_| format!("{shown}: a NUL in the path"))?;
    // The data directory itself: its own last component is not followed either.
    let dir = open_at(libc::AT_FDCWD, &path, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| format!("{shown}: {e} (the data directory must be a directory, not a link)"))?;
    chown_dir(dir, data, uid, gid, 0)
}

fn chown_dir(dir: OwnedFd, shown: &Path, uid: Uid, gid: Gid, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{}: nested deeper than the store ever makes", shown.display()));
    }
    chown_fd(&dir, uid, gid).map_err(|e| format!("chown {}: {e}", shown.display()))?;
    for name in entries(&dir).map_err(|e| format!("{}: {e}", shown.display()))? {
        let here = shown.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
        // A directory opens as one (O_NOFOLLOW: a link fails with ELOOP);
        // anything else opens as a bare reference to the entry itself.
        match open_at(dir.as_raw_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(sub) => chown_dir(sub, &here, uid, gid, depth + 1)?,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(_) => {
                let fd = match open_at(dir.as_raw_fd(), &name, libc::O_PATH) {
                    Ok(fd) => fd,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) => return Err(format!("{}: {e}", here.display())),
                };
                let st = stat_of(&fd).map_err(|e| format!("{}: {e}", here.display()))?;
                match st.st_mode & libc::S_IFMT {
                    libc::S_IFREG if st.st_nlink > 1 => {
                        return Err(format!(
                            "{}: a file with {} hard links in the data directory; remove the extra links",
                            here.display(),
                            st.st_nlink
                        ))
                    }
                    libc::S_IFREG => chown_fd(&fd, uid, gid).map_err(|e| format!("chown {}: {e}", here.display()))?,
                    // Swapped in between the two opens: walk it as a directory, through this descriptor's inode only.
                    libc::S_IFDIR => {
                        let sub = open_at(dir.as_raw_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY)
                            .map_err(|e| format!("{}: {e}", here.display()))?;
                        let again = stat_of(&sub).map_err(|e| format!("{}: {e}", here.display()))?;
                        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                            return Err(format!(
                                "{}: changed while it was being given to the service user",
                                here.display()
                            ));
                        }
                        chown_dir(sub, &here, uid, gid, depth + 1)?;
                    }
                    // Links and special files: neither followed nor given away.
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// The names in the directory `dir` (without `.` and `..`), read through a duplicate of its descriptor.
fn entries(dir: &OwnedFd) -> std::io::Result<Vec<CString>> {
    let dup = dir.try_clone()?;
    // SAFETY: `dup` is an open directory descriptor; on success the stream owns it.
    let stream = unsafe { libc::fdopendir(dup.as_raw_fd()) };
    if stream.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    // The stream owns the descriptor now; closedir below closes it.
    std::mem::forget(dup);
    let mut names = Vec::new();
    loop {
        // SAFETY: `stream` is a valid open directory stream until closedir.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    // SAFETY: `stream` came from fdopendir and is closed exactly once.
    unsafe { libc::closedir(stream) };
    Ok(names)
}

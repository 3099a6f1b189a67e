//! Local-state layer: finding, creating and checking the client's home directory.
//!
//! Invariant: the client only uses a home directory that this user owns and
//! that neither group nor others can access; every directory it creates is 0700,
//! and every file it replaces is replaced whole (`write_atomic`), mode 0600.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a home directory cannot be used; its Display is one line.
#[derive(Debug)]
pub struct HomeError(String);

impl std::fmt::Display for HomeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HomeError {}

/// `$XDG_DATA_HOME/sotto`, else `$HOME/.local/share/sotto` (relative values are ignored, as XDG says).
pub fn default_home() -> Result<PathBuf, HomeError> {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(data) = absolute("XDG_DATA_HOME") {
        return Ok(data.join("sotto"));
    }
    if let Some(home) = absolute("HOME") {
        return Ok(home.join(".local").join("share").join("sotto"));
    }
    Err(HomeError("no home directory: neither XDG_DATA_HOME nor HOME is set; pass --home DIR".into()))
}

/// Creates `dir` and any missing parent with mode 0700; existing ones are left as they are.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates the home directory if needed, then refuses it unless it is private.
pub fn prepare(dir: &Path) -> Result<(), HomeError> {
    create_private_dir(dir).map_err(|e| HomeError(format!("cannot create home directory {}: {e}", dir.display())))?;
    check_private(dir)
}

/// Refuses a directory that is not ours or that group or others can access.
pub fn check_private(dir: &Path) -> Result<(), HomeError> {
    let md = fs::metadata(dir).map_err(|e| HomeError(format!("cannot use directory {}: {e}", dir.display())))?;
    if !md.is_dir() {
        return Err(HomeError(format!("{} is not a directory", dir.display())));
    }
    let me = nix::unistd::getuid().as_raw();
    if md.uid() != me {
        return Err(HomeError(format!(
            "directory {} belongs to uid {}, not to this user ({me})",
            dir.display(),
            md.uid()
        )));
    }
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(HomeError(format!(
            "directory {} is accessible by group or others (mode {mode:04o}); run `chmod 700 {}` or choose another --home",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically: a temporary file (0600) in the same
/// directory, fsync, rename over `path`, fsync of the directory. The directory
/// is created 0700 if missing and must be private.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a file needs a directory"))?;
    create_private_dir(dir)?;
    check_private(dir).map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.0))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp =
        dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), sotto::crypto::hex(&sotto::crypto::random::<4>())));
    let written = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_and_refuses_loose_directories() {
        let base =
            std::env::temp_dir().join(format!("sotto-home-test-{}", sotto::crypto::hex(&sotto::crypto::random::<6>())));
        let home = base.join("a").join("b");
        prepare(&home).unwrap();
        assert_eq!(fs::metadata(&home).unwrap().permissions().mode() & 0o777, 0o700);
        fs::set_permissions(&home, fs::Permissions::from_mode(0o750)).unwrap();
        let err = prepare(&home).unwrap_err().to_string();
        assert!(err.contains("accessible by group or others") && !err.contains('\n'), "{err}");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn writes_whole_private_files_and_replaces_them() {
        let base =
            std::env::temp_dir().join(format!("sotto-home-test-{}", sotto::crypto::hex(&sotto::crypto::random::<6>())));
        let file = base.join("u").join("pins");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(base.join("u")).unwrap().count(), 1, "no temporary file left behind");
        fs::remove_dir_all(&base).unwrap();
    }
}

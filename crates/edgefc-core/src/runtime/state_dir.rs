//! The runtime's files: the state directory, its lock, its socket and the
//! admin token, all reachable by the runtime's owner only. Whoever holds the
//! lock owns the directory: a second runtime refuses to start while the
//! first lives (even stopped with SIGSTOP), and only the holder ever removes
//! the socket.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

const LOCK_FILE: &str = "edgefc.lock";

/// Held for as long as the runtime runs; the kernel lets go of it when the
/// process ends, however it ends.
pub(super) struct StateLock {
    _file: File,
}

/// A random secret, unguessable by other local processes.
pub(super) fn new_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The token kept at `path` (the admin token, the observe token) since an
/// earlier start, so that clients holding it keep working across restarts;
/// a new one when there is none (or the file is not this user's alone, or
/// not a token).
pub(super) fn load_or_create_token(path: &Path) -> Result<String> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let owner_only = std::fs::metadata(path).is_ok_and(|metadata| metadata.uid() == me && metadata.mode() & 0o077 == 0);
    if let Some(token) = std::fs::read_to_string(path).ok().filter(|_| owner_only) {
        let token = token.trim();
        if token.len() == 64 && token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Ok(token.to_string());
        }
    }
    rotate_token(path)
}

/// A new token, written to `path` in place of the old one.
pub(super) fn rotate_token(path: &Path) -> Result<String> {
    let token = new_token();
    write_owner_only(path, token.as_bytes())?;
    Ok(token)
}

/// Creates the state directory 0700, or checks that an existing one is a
/// directory of this user's that nobody else can reach: its mode is never
/// changed, since it may be shared on purpose.
pub(super) fn prepare(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(metadata) => {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            let mode = metadata.mode() & 0o777;
            if !metadata.is_dir() || metadata.uid() != me || mode & 0o077 != 0 {
                return Err(Error::config(format!(
                    "stateDir {} must be a directory of this user's that no one else can reach (it is mode {mode:o}, owner {}); \
                     name a new directory (it is created 0700) or chmod 700 this one",
                    dir.display(),
                    metadata.uid()
                )));
            }
            Ok(())
        }
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| Error::config(format!("cannot create state directory {}: {error}", dir.display()))),
    }
}

/// Takes the directory's lock, or says which runtime holds it.
pub(super) fn lock(dir: &Path, socket: &Path) -> Result<StateLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|error| Error::config(format!("cannot open {}: {error}", path.display())))?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(Error::config(format!(
            "another edgefc runtime (pid {}) is already listening on {}: it holds {}",
            holder.trim(),
            socket.display(),
            path.display()
        )));
    }
    let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{}", std::process::id()));
    Ok(StateLock { _file: file })
}

/// Removes a socket file a runtime that ended left behind; only the lock's
/// holder calls this.
pub(super) fn remove_stale_socket(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::config(format!("cannot remove stale socket {}: {error}", path.display()))),
    }
}

pub(super) fn restrict_to_owner(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| Error::config(format!("cannot restrict {}: {error}", path.display())))
}

pub(super) fn write_owner_only(path: &Path, contents: &[u8]) -> Result<()> {
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(|error| Error::config(format!("cannot write {}: {error}", path.display())))
}

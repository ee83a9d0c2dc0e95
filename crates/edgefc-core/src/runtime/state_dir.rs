//! The runtime's files: the state directory, its socket and the admin token,
//! all readable by the runtime's owner only.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixStream;

use crate::error::{Error, Result};

/// A random secret, unguessable by other local processes.
pub(super) fn new_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

pub(super) fn prepare(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|error| Error::config(format!("cannot create state directory {}: {error}", dir.display())))
}

pub(super) fn restrict_to_owner(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| Error::config(format!("cannot restrict {}: {error}", path.display())))
}

/// A socket file left by a runtime that died is removed; one that still
/// answers belongs to a live runtime, which is an error.
pub(super) async fn remove_stale_socket(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(Error::config(format!("another edgefc runtime is already listening on {}", path.display())));
    }
    std::fs::remove_file(path).map_err(|error| Error::config(format!("cannot remove stale socket {}: {error}", path.display())))
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

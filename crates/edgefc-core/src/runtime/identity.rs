//! Which user a function's workers run as (`runAs`). A runtime running as
//! root (how a gateway runs it) never hands that to a function unless the
//! config says so: by default workers run as the system user `edgefc` if
//! there is one, else `nobody`. A runtime that is not root cannot switch
//! users, and runs every worker as itself.
//!
//! The worker starts as the runtime's user, loads edgefc's own code, then
//! switches ([`become_user`]) before it loads the function's: so edgefc may
//! be installed where only root can read it, while the function's code
//! must be readable by the user it runs as, which [`check_readable`] makes
//! sure of when the runtime starts.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `runAs` of a function, or the runtime-wide default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunAs {
    /// Not configured: an unprivileged user when the runtime is root.
    #[default]
    Unprivileged,
    /// `"runtime"`: the runtime's own user, root included.
    Runtime,
    /// `{"uid": …, "gid": …}`; uid 0 is allowed, since it is explicit.
    Ids { uid: u32, gid: u32 },
}

/// The system users an unprivileged worker runs as, the first that exists.
pub const UNPRIVILEGED_USERS: [&str; 2] = ["edgefc", "nobody"];

/// A user and group to switch a worker to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// How messages name it: "nobody (uid 65534)".
    pub label: String,
}

impl Identity {
    fn ids(uid: u32, gid: u32) -> Identity {
        Identity { uid, gid, label: format!("uid {uid}, gid {gid}") }
    }
}

/// The identity workers of `run_as` switch to, `None` when they stay the
/// runtime's user, or why it cannot be had. `runtime_uid` is the runtime's
/// effective uid; `lookup` finds a system user by name.
pub fn worker_identity(
    run_as: RunAs,
    runtime_uid: u32,
    lookup: impl Fn(&str) -> Option<(u32, u32)>,
) -> Result<Option<Identity>, String> {
    match (run_as, runtime_uid) {
        (RunAs::Runtime, _) => Ok(None),
        (RunAs::Unprivileged, 0) => UNPRIVILEGED_USERS
            .iter()
            .find_map(|name| lookup(name).map(|(uid, gid)| Identity { uid, gid, label: format!("{name} (uid {uid})") }))
            .map(Some)
            .ok_or_else(|| {
                "no unprivileged user to run functions as (neither edgefc nor nobody exists): create one, or set runAs"
                    .to_string()
            }),
        (RunAs::Unprivileged, _) => Ok(None),
        (RunAs::Ids { uid, gid }, 0) => Ok(Some(Identity::ids(uid, gid))),
        (RunAs::Ids { uid, .. }, own) if uid == own => Ok(None),
        (RunAs::Ids { uid, .. }, own) => Err(format!(
            "runAs uid {uid} needs the runtime to run as root; it runs as uid {own} (leave runAs out, or set it to \"runtime\")"
        )),
    }
}

/// The runtime's effective uid.
pub fn runtime_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// A system user's uid and primary gid, from the password database.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    let mut buffer = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data, filled in by getpwnam_r.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to memory that outlives the call, with its true size.
    let status = unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    (status == 0 && !found.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

/// Refuses when `identity` could not load the function: every directory on
/// the way to `code_dir` must let it through, `code_dir` be listable, and
/// `file` (where it exists) readable. Mode bits only: the worker drops
/// every supplementary group, and ACLs are not consulted.
pub fn check_readable(identity: &Identity, code_dir: &Path, file: Option<&Path>) -> Result<(), String> {
    if identity.uid == 0 {
        return Ok(());
    }
    let refuse = |path: &Path, what: &str| {
        format!(
            "{} is not {what} by {}, which the function's workers run as (runAs): make it so, or set runAs",
            path.display(),
            identity.label
        )
    };
    for ancestor in code_dir.ancestors().skip(1) {
        if !permits(identity, ancestor, 0o1) {
            return Err(refuse(ancestor, "searchable"));
        }
    }
    if !permits(identity, code_dir, 0o5) {
        return Err(refuse(code_dir, "readable"));
    }
    match file {
        Some(file) if !permits(identity, file, 0o4) => Err(refuse(file, "readable")),
        _ => Ok(()),
    }
}

/// Whether the mode bits of `path` grant `identity` every right in `wanted`
/// (r=4, w=2, x=1).
fn permits(identity: &Identity, path: &Path, wanted: u32) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    let mode = metadata.mode();
    let granted = if metadata.uid() == identity.uid {
        mode >> 6
    } else if metadata.gid() == identity.gid {
        mode >> 3
    } else {
        mode
    } & 0o7;
    granted & wanted == wanted
}

/// Switches the calling process to `uid` and `gid` for good, dropping every
/// supplementary group; what a worker does once edgefc's code is loaded and
/// before the function's is. The parent-death signal, which the kernel
/// clears when credentials change, is set again, and the process stays
/// non-dumpable.
pub fn become_user(uid: u32, gid: u32) -> std::io::Result<()> {
    let check = |status: libc::c_int| if status == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
    // SAFETY: none of these calls touches memory this process owns.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setgid(gid))?;
        check(libc::setuid(uid))?;
        if uid != 0 && libc::setuid(0) == 0 {
            return Err(std::io::Error::other("root could be regained after switching users"));
        }
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong))?;
    }
    if !make_non_dumpable() {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the calling process non-dumpable (`PR_SET_DUMPABLE` 0); what a
/// worker does first. Returns whether it took effect.
pub fn make_non_dumpable() -> bool {
    // SAFETY: prctl(PR_SET_DUMPABLE) has no memory-safety preconditions.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(name: &str) -> Option<(u32, u32)> {
        (name == "nobody").then_some((65534, 65534))
    }

    #[test]
    fn root_runs_functions_as_an_unprivileged_user_unless_told_otherwise() {
        let nobody = worker_identity(RunAs::Unprivileged, 0, users).unwrap().unwrap();
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
        assert_eq!(worker_identity(RunAs::Runtime, 0, users).unwrap(), None);
        let root = worker_identity(RunAs::Ids { uid: 0, gid: 0 }, 0, users).unwrap().unwrap();
        assert_eq!(root.uid, 0);
        assert!(worker_identity(RunAs::Unprivileged, 0, |_| None).unwrap_err().contains("no unprivileged user"));
    }

    #[test]
    fn a_runtime_that_is_not_root_runs_functions_as_itself_and_refuses_other_users() {
        assert_eq!(worker_identity(RunAs::Unprivileged, 1000, users).unwrap(), None);
        assert_eq!(worker_identity(RunAs::Ids { uid: 1000, gid: 1000 }, 1000, users).unwrap(), None);
        let error = worker_identity(RunAs::Ids { uid: 65534, gid: 65534 }, 1000, users).unwrap_err();
        assert!(error.contains("needs the runtime to run as root"), "{error}");
    }
}

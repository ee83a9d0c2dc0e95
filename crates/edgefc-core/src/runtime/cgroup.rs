//! A control group per worker, where the runtime may create them (as root,
//! with a writable cgroup v2 tree or v1 `pids` hierarchy): what a worker
//! starts stays in its group even after `setsid` or a double fork, so
//! ending the group ends them all. Elsewhere workers fall back to their
//! process group alone.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The runtime's own directory of worker groups, removed when dropped.
#[derive(Debug)]
pub struct WorkerGroups {
    base: PathBuf,
    next: AtomicU64,
}

/// One worker's group.
#[derive(Debug)]
pub struct WorkerGroup {
    dir: PathBuf,
    /// `cgroup.procs`, ready for the child to write itself into between fork and exec.
    procs: CString,
}

/// Rounds of signalling a group's processes: one that forks while being
/// killed adds a process the next round finds.
const KILL_ROUNDS: usize = 20;

impl WorkerGroups {
    /// `None` when this process may not create control groups.
    pub fn create() -> Option<WorkerGroups> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let hierarchy = own_hierarchy()?;
        remove_abandoned(&hierarchy);
        // One process may host several runtimes (embedded in Node): each gets its own directory.
        static RUNTIMES: AtomicU64 = AtomicU64::new(1);
        let runtime = RUNTIMES.fetch_add(1, Ordering::Relaxed);
        let base = hierarchy.join(format!("edgefc-{}-{runtime}", std::process::id()));
        std::fs::create_dir_all(&base).ok()?;
        Some(WorkerGroups { base, next: AtomicU64::new(1) })
    }

    pub fn new_group(&self) -> Option<WorkerGroup> {
        let dir = self.base.join(format!("worker-{}", self.next.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir(&dir).ok()?;
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok()?;
        Some(WorkerGroup { dir, procs })
    }
}

impl Drop for WorkerGroups {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.base);
    }
}

impl WorkerGroup {
    /// Moves the calling process into the group. Only async-signal-safe
    /// calls, for use between fork and exec; a failure leaves the worker
    /// with its process group alone.
    ///
    /// # Safety
    /// Call only in a freshly forked child.
    pub unsafe fn enter(&self) {
        let fd = libc::open(self.procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }

    /// Kills every process left in the group, then removes it.
    pub fn end(&self) {
        end_group(&self.dir);
    }
}

/// Kills every process left in the group at `dir`, then removes it.
fn end_group(dir: &Path) {
    for _ in 0..KILL_ROUNDS {
        let pids = members(dir);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::yield_now();
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes the groups of runtimes that ended without removing them.
fn remove_abandoned(hierarchy: &Path) {
    let Ok(entries) = std::fs::read_dir(hierarchy) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|name| name.strip_prefix("edgefc-")).and_then(|rest| rest.split_once('-'));
        let Some((pid, _)) = pid else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        for worker in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
            end_group(&worker.path());
        }
        let _ = std::fs::remove_dir(entry.path());
    }
}

fn members(dir: &Path) -> Vec<libc::pid_t> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|procs| procs.lines().filter_map(|pid| pid.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Where this process's own control group lies: the cgroup v2 tree, or the
/// v1 `pids` hierarchy.
fn own_hierarchy() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let root = Path::new("/sys/fs/cgroup");
    let (mount, controller) =
        if root.join("cgroup.controllers").exists() { (root.to_path_buf(), "") } else { (root.join("pids"), "pids") };
    let path = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|name| name == controller).then(|| path.trim_start_matches('/').to_string())
    })?;
    let dir = mount.join(path);
    dir.is_dir().then_some(dir)
}

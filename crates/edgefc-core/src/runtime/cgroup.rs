//! A control group per worker, where the runtime may create them (as root,
//! with a writable cgroup v2 tree or v1 `pids` hierarchy): what a worker
//! starts stays in its group even after `setsid` or a double fork, so
//! ending the group ends them all. Where the memory controller is there too
//! (v2, or the v1 `memory` hierarchy), the group's memory, children's
//! included, is capped at the function's `memorySize` by the kernel.
//! Elsewhere workers fall back to their process group alone.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The runtime's own directories of worker groups, removed when dropped.
#[derive(Debug)]
pub struct WorkerGroups {
    /// Where processes are tracked (v2, or v1 `pids`).
    base: PathBuf,
    /// Where memory is capped, when it is another v1 hierarchy; with v2,
    /// `base` itself when its memory controller is on.
    memory_base: Option<PathBuf>,
    version: Version,
    next: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// One worker's group.
#[derive(Debug)]
pub struct WorkerGroup {
    dir: PathBuf,
    /// The v1 memory group, when there is one apart from `dir`.
    memory_dir: Option<PathBuf>,
    /// Where `memory_limit` applies: `dir` or `memory_dir`.
    limited: Option<PathBuf>,
    version: Version,
    /// Each group's `cgroup.procs`, ready for the child to write itself
    /// into between fork and exec.
    procs: Vec<CString>,
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
        let root = Path::new("/sys/fs/cgroup");
        let version = if root.join("cgroup.controllers").exists() { Version::V2 } else { Version::V1 };
        // One process may host several runtimes (embedded in Node): each gets its own directory.
        static RUNTIMES: AtomicU64 = AtomicU64::new(1);
        let name = format!("edgefc-{}-{}", std::process::id(), RUNTIMES.fetch_add(1, Ordering::Relaxed));
        let runtime_dir = |hierarchy: PathBuf| {
            remove_abandoned(&hierarchy);
            let dir = hierarchy.join(&name);
            std::fs::create_dir_all(&dir).ok().map(|()| dir)
        };
        let (base, memory_base) = match version {
            Version::V2 => {
                let base = runtime_dir(own_group(root, "")?)?;
                // Lets each worker's group have memory.max, where the tree allows.
                let _ = std::fs::write(base.join("cgroup.subtree_control"), "+memory +pids");
                let memory = std::fs::read_to_string(base.join("cgroup.subtree_control"))
                    .is_ok_and(|controllers| controllers.split_whitespace().any(|name| name == "memory"));
                (base.clone(), memory.then_some(base))
            }
            Version::V1 => {
                let base = runtime_dir(own_group(&root.join("pids"), "pids")?)?;
                (base, own_group(&root.join("memory"), "memory").and_then(runtime_dir))
            }
        };
        Some(WorkerGroups { base, memory_base, version, next: AtomicU64::new(1) })
    }

    /// A group for a new worker, its memory capped at `memory_limit` bytes
    /// where the memory controller is available.
    pub fn new_group(&self, memory_limit: u64) -> Option<WorkerGroup> {
        let name = format!("worker-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let dir = self.base.join(&name);
        std::fs::create_dir(&dir).ok()?;
        let memory_dir = match (&self.memory_base, self.version) {
            (Some(memory_base), Version::V1) => {
                let memory_dir = memory_base.join(&name);
                std::fs::create_dir(&memory_dir).ok().map(|()| memory_dir)
            }
            _ => None,
        };
        let limited = match self.version {
            Version::V2 => self.memory_base.as_ref().map(|_| dir.clone()),
            Version::V1 => memory_dir.clone(),
        };
        let procs = [Some(&dir), memory_dir.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|dir| CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok())
            .collect();
        let group = WorkerGroup { dir, memory_dir, limited, version: self.version, procs };
        group.limit_memory(memory_limit);
        Some(group)
    }
}

impl Drop for WorkerGroups {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.base);
        if let Some(memory_base) = self.memory_base.as_ref().filter(|dir| **dir != self.base) {
            let _ = std::fs::remove_dir(memory_base);
        }
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
        for procs in &self.procs {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
    }

    /// Caps the group's memory, swap included, where the controller is there.
    fn limit_memory(&self, limit: u64) {
        let Some(dir) = &self.limited else {
            return;
        };
        let limit = limit.to_string();
        // Over the limit, the whole group goes, not the one process the
        // kernel would pick: a worker whose child was killed could still
        // answer as if nothing happened. v2 kills the group itself; v1
        // pauses it instead of killing (`oom_kill_disable`), and the
        // runtime, seeing it paused, ends the group.
        match self.version {
            Version::V2 => {
                let _ = std::fs::write(dir.join("memory.max"), &limit);
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                let _ = std::fs::write(dir.join("memory.oom.group"), "1");
            }
            Version::V1 => {
                // memsw (memory plus swap) may not be below memory: memory first.
                let _ = std::fs::write(dir.join("memory.limit_in_bytes"), &limit);
                let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), &limit);
                let _ = std::fs::write(dir.join("memory.oom_control"), "1");
            }
        }
    }

    /// Whether the group went over its memory limit: the kernel killed a
    /// process of it (v2), or paused it (v1).
    pub fn ran_out_of_memory(&self) -> bool {
        let Some(dir) = &self.limited else {
            return false;
        };
        let file = match self.version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        std::fs::read_to_string(dir.join(file)).is_ok_and(|events| {
            events.lines().any(|line| {
                let (name, count) = line.split_once(' ').unwrap_or((line, ""));
                matches!(name, "oom_kill" | "under_oom") && count.trim().parse::<u64>().is_ok_and(|count| count > 0)
            })
        })
    }

    /// Kills every process left in the group, then removes it.
    pub fn end(&self) {
        end_group(&self.dir);
        if let Some(memory_dir) = &self.memory_dir {
            end_group(memory_dir);
        }
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

/// This process's own group in the hierarchy mounted at `mount` whose
/// controller is `controller` ("" for the cgroup v2 tree).
fn own_group(mount: &Path, controller: &str) -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|name| name == controller).then(|| path.trim_start_matches('/').to_string())
    })?;
    let dir = mount.join(path);
    dir.is_dir().then_some(dir)
}

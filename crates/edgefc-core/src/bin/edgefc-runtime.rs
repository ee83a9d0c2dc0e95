//! The runtime as a standalone process, without Node in it: what
//! `edgefc run` starts. Node is only needed for the workers it launches.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use edgefc_core::runtime::{self, launcher, log, Config, NodeLauncher};
use edgefc_core::Error;
use tokio::signal::unix::{signal, SignalKind};

#[global_allocator]
static ALLOCATOR: edgefc_core::transport::allocator::SplitAllocator = edgefc_core::transport::allocator::SplitAllocator;

/// Runs the edgefc runtime described by an edgefc.json until SIGINT or SIGTERM.
#[derive(Parser)]
#[command(name = "edgefc-runtime", version)]
struct Args {
    /// The runtime's edgefc.json.
    #[arg(long)]
    config: PathBuf,
    /// The node executable that runs the workers.
    #[arg(long)]
    node: PathBuf,
    /// The worker bootstrap script (lib/core/worker.js).
    #[arg(long)]
    bootstrap: PathBuf,
    /// Prepended to the workers' NODE_PATH, so `require('linkedge-core-sdk')` resolves.
    #[arg(long)]
    module_dir: PathBuf,
    /// Ends the runtime (as SIGTERM would) when the process with this pid,
    /// its parent (the `edgefc run` wrapper), ends.
    #[arg(long, value_name = "PID")]
    die_with_parent: Option<u32>,
}

/// Asks the kernel for SIGTERM when the parent ends; exits at once if it
/// has ended already.
fn die_with_parent(parent: u32) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid have no memory-safety preconditions.
    let parent_alive = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
        libc::getppid() as u32 == parent
    };
    if !parent_alive {
        std::process::exit(1);
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(parent) = args.die_with_parent {
        die_with_parent(parent);
    }
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => return fail(error),
    };
    let _log = log::init_standalone(config.limits.log.max_waiting_lines, config.limits.log.max_waiting_bytes);
    edgefc_core::transport::allocator::keep_large_buffers_warm();
    // One thread: the runtime moves frames rather than computing, and every
    // hand-off between threads costs a wake-up that is dearer than the work
    // (measured by `npm run bench`).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(args, config)),
        Err(error) => Err(Error::new(edgefc_core::ErrorCode::Internal, format!("cannot start the async runtime: {error}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

fn fail(error: Error) -> ExitCode {
    // Written directly: the process is about to exit, and this line must not
    // be lost; a closed stderr is no reason to panic.
    let _ = writeln!(std::io::stderr(), "edgefc: {}: {}", error.code, error.message);
    ExitCode::from(1)
}

async fn run(args: Args, config: Config) -> Result<(), Error> {
    let (mut interrupt, mut terminate) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        _ => return Err(Error::new(edgefc_core::ErrorCode::Internal, "cannot install signal handlers")),
    };
    // What workers leave behind becomes this process's, to be ended at stop.
    launcher::adopt_orphans();
    let launcher = NodeLauncher::new(args.node, args.bootstrap, args.module_dir);
    let handle = runtime::start(config, Arc::new(launcher)).await?;
    edgefc_core::info!("runtime", "edgefc runtime listening on {}", handle.socket_path().display());
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    handle.stop().await;
    launcher::end_orphans();
    edgefc_core::info!("runtime", "edgefc runtime stopped");
    Ok(())
}

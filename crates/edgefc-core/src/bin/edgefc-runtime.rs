//! The runtime as a standalone process, without Node in it: what
//! `edgefc run` starts. Node is only needed for the workers it launches.
//!
//! `edgefc-runtime --config edgefc.json --node /usr/bin/node --bootstrap lib/worker.js --module-dir lib/node_path`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use edgefc_core::{Config, NodeLauncher};
use tokio::signal::unix::{signal, SignalKind};

struct Args {
    config: PathBuf,
    launcher: NodeLauncher,
}

fn parse_args() -> Result<Args, String> {
    let mut config = None;
    let mut node = None;
    let mut bootstrap = None;
    let mut module_dir = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(flag) = args.next() {
        let slot = match flag.to_str() {
            Some("--config") => &mut config,
            Some("--node") => &mut node,
            Some("--bootstrap") => &mut bootstrap,
            Some("--module-dir") => &mut module_dir,
            _ => return Err(format!("unknown argument {}", flag.to_string_lossy())),
        };
        *slot = Some(PathBuf::from(args.next().ok_or_else(|| format!("{} needs a value", flag.to_string_lossy()))?));
    }
    let missing = |name: &str| format!("{name} is required");
    Ok(Args {
        config: config.ok_or_else(|| missing("--config"))?,
        launcher: NodeLauncher {
            node: node.ok_or_else(|| missing("--node"))?,
            bootstrap: bootstrap.ok_or_else(|| missing("--bootstrap"))?,
            module_dir: module_dir.ok_or_else(|| missing("--module-dir"))?,
        },
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("edgefc-runtime: {message}\nusage: edgefc-runtime --config F --node F --bootstrap F --module-dir D");
            return ExitCode::from(2);
        }
    };
    // One thread: the runtime moves frames rather than computing, and every
    // hand-off between threads costs a wake-up that is dearer than the work
    // (measured by `npm run bench`).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("edgefc: ERR_INTERNAL: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let config = match Config::load(&args.config) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("edgefc: {}: {}", error.code, error.message);
                return ExitCode::from(1);
            }
        };
        let (mut interrupt, mut terminate) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            _ => {
                eprintln!("edgefc: ERR_INTERNAL: cannot install signal handlers");
                return ExitCode::from(1);
            }
        };
        let handle = match edgefc_core::runtime::start(config, Arc::new(args.launcher)).await {
            Ok(handle) => handle,
            Err(error) => {
                eprintln!("edgefc: {}: {}", error.code, error.message);
                return ExitCode::from(1);
            }
        };
        println!("edgefc runtime listening on {}", handle.socket_path().display());
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        handle.stop().await;
        println!("edgefc runtime stopped");
        ExitCode::SUCCESS
    })
}

'use strict';

const path = require('path');

const native = require('../native.js');
const { fromNative } = require('./core/errors');
const { RuntimeLink } = require('./core/link');
const FCClient = require('./linkedge/fc');

/** A runtime started in this process by `startRuntime`. Like a listening
 * server, it keeps the process alive until it is stopped. */
class Runtime {
  constructor(handle) {
    this._handle = handle;
    this.socketPath = handle.socketPath;
    this.observeUrl = handle.observeAddress ? `http://${handle.observeAddress}/` : null;
    // The runtime's threads are invisible to Node's event loop; this timer is what keeps it running.
    this._keepAlive = setInterval(() => {}, 1 << 30);
  }

  /** The admin token now (it follows `edgefc token rotate`). */
  get adminToken() {
    return this._handle.adminToken;
  }

  /** An FCClient that talks to this runtime with its admin token. */
  client(options) {
    return new FCClient({ ...options, socketPath: this.socketPath, token: this.adminToken });
  }

  /** Every number the runtime keeps (the JSON of `edgefc stats`; `/metrics` encodes the same). */
  async stats() {
    const link = new RuntimeLink({ socketPath: this.socketPath, token: this.adminToken });
    return link.call((session) => session.query('stats'));
  }

  /** Stops every worker, closes the socket and removes it. */
  stop() {
    clearInterval(this._keepAlive);
    return this._handle.stop();
  }
}

/** How the runtime starts a worker: this Node, the bootstrap, and the directory that makes `linkedge-core-sdk` resolve here. */
const WORKER_SETUP = {
  node: process.execPath,
  bootstrap: path.join(__dirname, 'core', 'worker.js'),
  moduleDir: path.join(__dirname, 'node_path'),
};

/** The standalone runtime (no Node in it) that `edgefc run` starts; built by `npm run build`. */
const RUNTIME_BINARY = path.join(__dirname, '..', 'edgefc-runtime');

/**
 * The command line of the standalone runtime for `configPath`, to be
 * started by this process: the runtime ends when this process does.
 */
function runtimeCommand(configPath) {
  return [RUNTIME_BINARY, [
    '--config', path.resolve(String(configPath)),
    '--node', WORKER_SETUP.node,
    '--bootstrap', WORKER_SETUP.bootstrap,
    '--module-dir', WORKER_SETUP.moduleDir,
    '--die-with-parent', String(process.pid),
  ]];
}

/**
 * Starts the runtime described by the edgefc.json at `configPath` inside
 * this process. Rejects with ERR_CONFIG when the file is wrong or the socket
 * is taken by a live runtime.
 */
async function startRuntime(configPath) {
  try {
    return new Runtime(await native.startRuntime(path.resolve(String(configPath)), WORKER_SETUP));
  } catch (err) {
    throw fromNative(err);
  }
}

module.exports = { Runtime, startRuntime, runtimeCommand };

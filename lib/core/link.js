'use strict';

const fs = require('fs');
const path = require('path');

const native = require('../../native.js');
const { EdgeFCError, ErrorCode, fromNative } = require('./errors');
const { clientOptions } = require('./params');
const { withTimeout } = require('./deadline');
const { sessionFor, inWorker, WORKER_ENDPOINT } = require('./session');

/** Codes after which a client that found its runtime through a config looks again (it may have restarted). */
const STALE_ENDPOINT_CODES = new Set([ErrorCode.RUNTIME_UNAVAILABLE, ErrorCode.UNAUTHORIZED]);

/**
 * Where to connect and with which token, from (in order) the client's
 * options `{socketPath, token}`, its option `{config}` (the runtime's
 * edgefc.json: its socket and admin token), the worker's own connection
 * (in a hosted function), or the environment (`EDGEFC_SOCKET`, and
 * `EDGEFC_TOKEN` or upstream's `AUTH_TOKEN`; else `EDGEFC_CONFIG`).
 */
function resolveEndpoint(options) {
  if (options.socketPath !== undefined) {
    return { socketPath: options.socketPath, token: options.token };
  }
  if (options.config !== undefined) {
    return endpointFromConfig(options.config);
  }
  if (inWorker()) {
    return WORKER_ENDPOINT;
  }
  const socketPath = process.env.EDGEFC_SOCKET;
  const token = process.env.EDGEFC_TOKEN || process.env.AUTH_TOKEN;
  if (socketPath && token) {
    return { socketPath, token };
  }
  if (process.env.EDGEFC_CONFIG) {
    return endpointFromConfig(process.env.EDGEFC_CONFIG);
  }
  throw new EdgeFCError(ErrorCode.RUNTIME_UNAVAILABLE, 'no edgefc runtime is configured: pass {config} or '
    + '{socketPath, token} to the client, or set EDGEFC_CONFIG, or EDGEFC_SOCKET and EDGEFC_TOKEN');
}

function endpointFromConfig(configPath) {
  let found;
  try {
    found = native.runtimeEndpoint(path.resolve(String(configPath)));
  } catch (err) {
    throw fromNative(err);
  }
  let token;
  try {
    token = fs.readFileSync(found.adminTokenPath, 'utf8').trim();
  } catch (err) {
    throw new EdgeFCError(ErrorCode.RUNTIME_UNAVAILABLE,
      `the edgefc runtime of ${configPath} is not running (no admin token at ${found.adminTokenPath})`);
  }
  return { socketPath: found.socketPath, token };
}

/**
 * What every client class shares: finding the runtime (lazily, so a client
 * can be built at module load before the runtime is up), and the per-call
 * timeout.
 */
class RuntimeLink {
  constructor(options) {
    this.options = clientOptions(options);
    this._endpoint = null;
    // Kept rather than looked up per call: finding it builds a key string.
    this._session = null;
  }

  /** Runs `call(session)` and returns what it resolves with; rejects with an EdgeFCError. */
  async call(call) {
    if (this._session === null) {
      if (this._endpoint === null) {
        this._endpoint = resolveEndpoint(this.options);
      }
      this._session = sessionFor(this._endpoint, this.options.connectTimeoutMs);
    }
    try {
      return await this._withTimeout(call(this._session));
    } catch (err) {
      if (STALE_ENDPOINT_CODES.has(err.code)) {
        this._endpoint = null;
        this._session = null;
      }
      throw err;
    }
  }

  /**
   * Invokes `target` (see session.invoke); the runtime also learns how long
   * this client waits (`timeoutMs`): the timeout of a call to another gateway.
   */
  invoke(target, asynchronous, invokerContext, payload, defaultTimeoutSecs = 0) {
    const callerTimeoutMs = Math.min(Math.ceil(this.options.timeoutMs || 0), 0xffffffff);
    return this.call((session) => session.invoke(
      target, asynchronous, invokerContext, payload, defaultTimeoutSecs, callerTimeoutMs,
    ));
  }

  _withTimeout(call) {
    const { timeoutMs } = this.options;
    return withTimeout(call, timeoutMs, () => new EdgeFCError(ErrorCode.TIMEOUT,
      `no answer from the edgefc runtime within ${timeoutMs} ms`));
  }

}

module.exports = { RuntimeLink };

'use strict';

const fs = require('fs');
const path = require('path');

const native = require('../native.js');
const { EdgeFCError, ErrorCode } = require('./errors');

/** Connecting plus the handshake; past this the runtime counts as unavailable. */
const DEFAULT_CONNECT_TIMEOUT_MS = 1000;

/** One connection per process and endpoint (and connect timeout), shared by every client. */
const channels = new Map();

function noop() {}

/**
 * Frames queued in one turn of the event loop are written together at its
 * end, or as soon as this many have gathered: under load, the runtime can
 * start on the first ones while this thread is still busy with the rest.
 */
const FLUSH_EVERY = 32;

/**
 * A connection to the runtime. Invocations and publishes are started with
 * one synchronous native call each; their outcomes come back in batches
 * through one callback (one wake-up of this thread for every reply that
 * arrived together), and settle the Promise of each call.
 */
class Channel {
  /** `onTasks(tasks)`, for a worker's serving channel: its tasks, batched; `[]` when the connection closed. */
  constructor(endpoint, serve, connectTimeoutMs, onTasks) {
    this._pending = new Map();
    this._nextTag = 1;
    // The native callback does not keep the process alive; this timer does,
    // while calls are outstanding (like an open socket with a request on it).
    this._keepAlive = setInterval(noop, 1 << 30);
    this._keepAlive.unref();
    this.native = new native.NativeChannel(endpoint.socketPath, endpoint.token, serve, connectTimeoutMs,
      (outcomes) => this._complete(outcomes), onTasks);
    this._flushScheduled = false;
    this._queued = 0;
    this._flush = () => {
      this._flushScheduled = false;
      this._queued = 0;
      this.native.flush();
    };
  }

  /** See FLUSH_EVERY. */
  scheduleFlush() {
    this._queued += 1;
    if (this._queued >= FLUSH_EVERY) {
      this._queued = 0;
      this.native.flush();
    } else if (!this._flushScheduled) {
      this._flushScheduled = true;
      queueMicrotask(this._flush);
    }
  }

  /** The worker's report of a finished task; written with this turn's other frames. */
  completeTask(id, functionError, body) {
    const failure = this.native.completeTask(id, functionError, body);
    this.scheduleFlush();
    return failure;
  }

  open() {
    return this.native.open();
  }

  /** Resolves with the native outcome: `{code, message}` or the result fields. */
  invoke(target, asynchronous, invokerContext, payload) {
    return this._start((tag) => this.native.startInvoke(tag, target, asynchronous, invokerContext, payload));
  }

  publish(topic, payload) {
    return this._start((tag) => this.native.startPublish(tag, topic, payload));
  }

  query(operation) {
    return this.native.query(operation);
  }

  subscribe(topicFilter) {
    return this.native.subscribe(topicFilter);
  }

  nextMessages() {
    return this.native.nextMessages();
  }

  _start(send) {
    const tag = this._nextTag;
    this._nextTag += 1;
    return new Promise((resolve) => {
      const failure = send(tag);
      if (failure) {
        resolve(failure);
        return;
      }
      if (this._pending.size === 0) {
        this._keepAlive.ref();
      }
      this._pending.set(tag, resolve);
      this.scheduleFlush();
    });
  }

  _complete(outcomes) {
    for (const outcome of outcomes) {
      const resolve = this._pending.get(outcome.tag);
      if (resolve !== undefined) {
        this._pending.delete(outcome.tag);
        resolve(outcome);
      }
    }
    if (this._pending.size === 0) {
      this._keepAlive.unref();
    }
  }
}

function key(endpoint, connectTimeoutMs) {
  return `${endpoint.socketPath}\0${endpoint.token}\0${connectTimeoutMs}`;
}

/**
 * Where to connect and with which token, from (in order) the client's
 * options `{socketPath, token}`, its option `{config}` (the runtime's
 * edgefc.json: its socket and admin token), or the environment
 * (`EDGEFC_SOCKET`, and `EDGEFC_TOKEN` or upstream's `AUTH_TOKEN`), which
 * is how hosted functions are set up.
 */
function resolveEndpoint(options) {
  if (options.socketPath !== undefined || options.token !== undefined) {
    if (typeof options.socketPath !== 'string' || typeof options.token !== 'string') {
      throw new EdgeFCError(ErrorCode.INVALID_PARAMS, 'options "socketPath" and "token" must both be strings');
    }
    return { socketPath: options.socketPath, token: options.token };
  }
  if (options.config !== undefined) {
    return endpointFromConfig(options.config);
  }
  const socketPath = process.env.EDGEFC_SOCKET;
  const token = process.env.EDGEFC_TOKEN || process.env.AUTH_TOKEN;
  if (!socketPath || !token) {
    throw new EdgeFCError(ErrorCode.RUNTIME_UNAVAILABLE, 'no edgefc runtime is configured: '
      + 'pass {config} or {socketPath, token} to the client, or set EDGEFC_SOCKET and EDGEFC_TOKEN');
  }
  return { socketPath, token };
}

function endpointFromConfig(configPath) {
  const found = native.runtimeEndpoint(path.resolve(String(configPath)));
  if (found.code) {
    throw new EdgeFCError(found.code, found.message);
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

function channelFor(endpoint, connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS) {
  const id = key(endpoint, connectTimeoutMs);
  let channel = channels.get(id);
  if (channel === undefined) {
    channel = new Channel(endpoint, false, connectTimeoutMs);
    channels.set(id, channel);
  }
  return channel;
}

/**
 * The worker's connection, which also receives its function's tasks through
 * `onTasks`. It is registered first so that the function's own FCClient
 * calls share it.
 */
function servingChannel(endpoint, onTasks) {
  const channel = new Channel(endpoint, true, DEFAULT_CONNECT_TIMEOUT_MS, onTasks);
  channels.set(key(endpoint, DEFAULT_CONNECT_TIMEOUT_MS), channel);
  return channel;
}

module.exports = { resolveEndpoint, channelFor, servingChannel };

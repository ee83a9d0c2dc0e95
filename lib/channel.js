'use strict';

const fs = require('fs');
const path = require('path');

const native = require('../native.js');
const { EdgeFCError, ErrorCode } = require('./errors');

/** Connecting plus the handshake; past this the runtime counts as unavailable. */
const DEFAULT_CONNECT_TIMEOUT_MS = 1000;

/** One connection per process and endpoint (and connect timeout), shared by every client. */
const channels = new Map();

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
    channel = new native.NativeChannel(endpoint.socketPath, endpoint.token, false, connectTimeoutMs);
    channels.set(id, channel);
  }
  return channel;
}

/**
 * The worker's connection, which also receives its function's tasks. It is
 * registered first so that the function's own FCClient calls share it.
 */
function servingChannel(endpoint) {
  const channel = new native.NativeChannel(endpoint.socketPath, endpoint.token, true, DEFAULT_CONNECT_TIMEOUT_MS);
  channels.set(key(endpoint, DEFAULT_CONNECT_TIMEOUT_MS), channel);
  return channel;
}

module.exports = { resolveEndpoint, channelFor, servingChannel };

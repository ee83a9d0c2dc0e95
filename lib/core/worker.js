'use strict';

// The worker bootstrap: the runtime starts `node worker.js` in a function's
// code directory, handing it a connection of its own (no socket path, no
// token). It loads the handler, and runs `handler(event, context, callback)`
// for every task.

const Module = require('module');
const path = require('path');

const native = require('../../native.js');

const { servingSession } = require('./session');

const NO_ERROR = 0;
const HANDLED = 1;
const UNHANDLED = 2;

function loadHandler(codeDir, handlerName) {
  const dot = handlerName.lastIndexOf('.');
  const file = path.resolve(codeDir, handlerName.slice(0, dot));
  const exportName = handlerName.slice(dot + 1);
  const module = require(file);
  const handler = module[exportName];
  if (typeof handler !== 'function') {
    throw new TypeError(`${file} does not export a function named "${exportName}"`);
  }
  return handler;
}

/** Base64 JSON, as the caller encoded it; anything else is passed on untouched. */
function decodeInvokerContext(encoded) {
  if (!encoded) {
    return {};
  }
  try {
    return JSON.parse(Buffer.from(encoded, 'base64').toString('utf8'));
  } catch (err) {
    return encoded;
  }
}

/** Function Compute's error body. */
function errorBody(err) {
  if (err instanceof Error) {
    return JSON.stringify({
      errorMessage: err.message,
      errorType: err.name,
      stackTrace: String(err.stack || '').split('\n').slice(1).map((line) => line.trim()),
    });
  }
  return JSON.stringify({ errorMessage: typeof err === 'string' ? err : String(err), errorType: 'Error' });
}

/** A string or bytes go back as they are; anything else as JSON. */
function encodeResult(result) {
  if (result === undefined) {
    return '';
  }
  if (typeof result === 'string' || Buffer.isBuffer(result)) {
    return result;
  }
  if (result instanceof Uint8Array) {
    return Buffer.from(result.buffer, result.byteOffset, result.byteLength);
  }
  // A function, a Symbol, or a toJSON that returns undefined serialize to nothing.
  const json = JSON.stringify(result);
  return json === undefined ? '' : json;
}

function runTask(session, handler, task, identity) {
  let finished = false;
  const finish = (functionError, body) => {
    if (finished) {
      return;
    }
    finished = true;
    try {
      session.completeTask(task.id, functionError, body);
    } catch (err) {
      console.error(`edgefc: could not report request ${task.requestId}: ${err.message}`);
    }
  };
  const succeed = (result) => {
    let body;
    try {
      body = encodeResult(result);
    } catch (err) {
      finish(UNHANDLED, errorBody(new TypeError(`the result cannot be serialized: ${err.message}`)));
      return;
    }
    finish(NO_ERROR, body);
  };
  const callback = (err, result) => {
    if (err !== null && err !== undefined) {
      finish(HANDLED, errorBody(err));
    } else {
      succeed(result);
    }
  };
  // requestId and invocationId name the invocation, the same on every
  // attempt: what a handler's side effects deduplicate on.
  const context = {
    requestId: task.requestId,
    invocationId: task.requestId,
    attempt: task.attempt,
    invokerContext: decodeInvokerContext(task.invokerContext),
    ...identity,
  };
  let returned;
  try {
    returned = handler(task.payload, context, callback);
  } catch (err) {
    finish(UNHANDLED, errorBody(err));
    return;
  }
  if (returned !== null && typeof returned === 'object' && typeof returned.then === 'function') {
    returned.then(succeed, (err) => finish(UNHANDLED, errorBody(err)));
  }
}

/**
 * Loads the SDK modules hosted functions require by name now, while this
 * process can still read edgefc's files, and makes those names resolve to
 * what was loaded: once the worker runs as its function's user, edgefc's
 * directory may be out of its reach.
 */
function preloadSdk() {
  const preloaded = new Map();
  for (const name of ['linkedge-core-sdk']) {
    const file = require.resolve(name);
    require(file);
    preloaded.set(name, file);
  }
  const resolveFilename = Module._resolveFilename;
  Module._resolveFilename = function resolveSdkFirst(request, ...rest) {
    const file = preloaded.get(request);
    return file !== undefined ? file : resolveFilename.call(this, request, ...rest);
  };
}

/** Switches to the function's user (EDGEFC_RUN_AS, "uid:gid"), when the runtime asks for one. */
function becomeFunctionUser(env) {
  const runAs = env.EDGEFC_RUN_AS;
  delete env.EDGEFC_RUN_AS;
  if (runAs) {
    const [uid, gid] = runAs.split(':').map(Number);
    native.becomeUser(uid, gid);
  }
}

async function main() {
  const env = process.env;
  native.hardenProcess();
  // As the first process of a PID namespace, this one gets SIGTERM only if it handles it.
  process.on('SIGTERM', () => process.exit(0));
  const connectionFd = Number(env.EDGEFC_CONNECTION_FD);
  delete env.EDGEFC_CONNECTION_FD;
  try {
    preloadSdk();
    becomeFunctionUser(env);
  } catch (err) {
    console.error(`edgefc: the worker cannot start: ${err.message}`);
    process.exit(1);
  }
  const identity = {
    functionId: env.FUNCTION_ID,
    serviceName: env.EDGEFC_SERVICE_NAME,
    functionName: env.EDGEFC_FUNCTION_NAME,
  };
  let handler = null;
  const backlog = [];
  // The worker lives as long as its connection: this timer keeps it up, and
  // the empty batch that says the connection closed ends it.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const onTasks = (tasks) => {
    if (tasks.length === 0) {
      clearInterval(keepAlive);
      process.exit(0);
    }
    if (handler === null) {
      backlog.push(...tasks);
      return;
    }
    for (const task of tasks) {
      runTask(session, handler, task, identity);
    }
  };
  let session;
  try {
    session = servingSession(connectionFd, onTasks);
    await session.open();
  } catch (err) {
    console.error(`edgefc: the worker cannot connect to the runtime: ${err.message}`);
    process.exit(1);
  }
  try {
    handler = loadHandler(env.EDGEFC_CODE_DIR, env.EDGEFC_HANDLER);
  } catch (err) {
    // Stay up and answer every task with the reason, as a crash loop would hide it.
    console.error(err);
    handler = () => {
      const loadError = new Error(`the handler ${env.EDGEFC_HANDLER} cannot be loaded: ${err.message}`);
      loadError.name = 'ImportModuleError';
      throw loadError;
    };
  }
  for (const task of backlog.splice(0)) {
    runTask(session, handler, task, identity);
  }
}

main();

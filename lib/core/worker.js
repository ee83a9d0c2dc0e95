'use strict';

// The worker bootstrap: the runtime starts `node worker.js` in a function's
// code directory, handing it a connection of its own (no socket path, no
// token). It loads the handler, and runs it for every task the way the
// function's flavor calls handlers (`lib/flavors`).

const { AsyncLocalStorage } = require('async_hooks');
const Module = require('module');

const native = require('../../native.js');

const { servingSession } = require('./session');
const { callOf } = require('../compat/call');
const flavors = require('../flavors');
const { TaskOutcome } = require('../flavors/outcome');

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

function runTask(session, flavor, handler, task, identity) {
  const invokerContext = decodeInvokerContext(task.invokerContext);
  const call = callOf(invokerContext);
  const outcome = new TaskOutcome(session, task, call);
  // requestId and invocationId name the invocation, the same on every
  // attempt: what a handler's side effects deduplicate on.
  const context = {
    requestId: task.requestId,
    invocationId: task.requestId,
    attempt: task.attempt,
    invokerContext,
    functionId: identity.functionId,
    serviceName: identity.serviceName,
    functionName: identity.functionName,
  };
  try {
    flavor.run(handler, task, { context, call }, outcome);
  } catch (err) {
    outcome.unhandled(err);
  }
}

/** Marks the start of a line a handler printed, before its invocation id (see `tagOutput`). */
const TAG_START = '\x1e';
const TAG_END = '\x1f';

/**
 * When the runtime writes its logs as JSON it asks (EDGEFC_TAG_OUTPUT) for
 * the invocation behind each line a handler prints: each line of text
 * written through process.stdout or process.stderr (console.log and the
 * like) while a task runs, in its callbacks and promises too, starts with
 * TAG_START, the invocation id and TAG_END, which the runtime takes off
 * again. Bytes, text in another encoding, and what bypasses those streams
 * (a write to fd 1) go untagged. Returns how to run a task so; `undefined`
 * when not asked.
 */
function tagOutput(env) {
  const asked = env.EDGEFC_TAG_OUTPUT === '1';
  delete env.EDGEFC_TAG_OUTPUT;
  if (!asked) {
    return undefined;
  }
  const running = new AsyncLocalStorage();
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream);
    let atLineStart = true;
    stream.write = (chunk, encoding, ...rest) => {
      const id = running.getStore();
      const text = typeof chunk === 'string' && (typeof encoding !== 'string' || /^utf-?8$/i.test(encoding));
      if (!text || id === undefined || chunk.length === 0) {
        if (chunk !== null && chunk !== undefined && chunk.length > 0) {
          atLineStart = typeof chunk === 'string' ? chunk.endsWith('\n') : chunk[chunk.length - 1] === 10;
        }
        return write(chunk, encoding, ...rest);
      }
      const tag = `${TAG_START}${id}${TAG_END}`;
      const tagged = (atLineStart ? tag : '') + chunk.replace(/\n(?=[\s\S])/g, `\n${tag}`);
      atLineStart = chunk.endsWith('\n');
      return write(tagged, encoding, ...rest);
    };
  }
  return (task, run) => running.run(task.requestId, run);
}

/**
 * The packages hosted functions require by name and get edgefc for:
 * `linkedge-core-sdk` always (upstream's own copy could not reach this
 * runtime), the other APIs' only where the function has none of its own.
 */
const ALWAYS_EDGEFC = ['linkedge-core-sdk'];
const UNLESS_OWN = ['wx-server-sdk', 'supabase-wechat-stable-v2', '@supabase/supabase-js'];

/**
 * Loads the SDK modules hosted functions require by name now, while this
 * process can still read edgefc's files, and makes those names resolve to
 * what was loaded (see ALWAYS_EDGEFC and UNLESS_OWN): once the worker runs
 * as its function's user, edgefc's directory may be out of its reach.
 */
function preloadSdk() {
  const preload = (name) => {
    const file = require.resolve(name);
    require(file);
    return [name, file];
  };
  const always = new Map(ALWAYS_EDGEFC.map(preload));
  const unlessOwn = new Map(UNLESS_OWN.map(preload));
  const resolveFilename = Module._resolveFilename;
  Module._resolveFilename = function resolveSdk(request, ...rest) {
    const edgefc = always.get(request);
    if (edgefc !== undefined) {
      return edgefc;
    }
    try {
      return resolveFilename.call(this, request, ...rest);
    } catch (err) {
      const facade = unlessOwn.get(request);
      if (facade === undefined || err.code !== 'MODULE_NOT_FOUND') {
        throw err;
      }
      return facade;
    }
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
  const flavor = flavors[env.EDGEFC_FLAVOR || 'linkedge'];
  const tagged = tagOutput(env);
  const run = tagged
    ? (task) => tagged(task, () => runTask(session, flavor, handler, task, identity))
    : (task) => runTask(session, flavor, handler, task, identity);
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
      run(task);
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
    handler = await flavor.load(env.EDGEFC_CODE_DIR, env.EDGEFC_HANDLER);
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
    run(task);
  }
}

main();

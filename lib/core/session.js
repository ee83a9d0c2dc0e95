'use strict';

const native = require('../../native.js');
const { fromNative } = require('./errors');
const { readOutcomes, readTasks } = require('./records');

/** Connecting plus the handshake; past this the runtime counts as unavailable. */
const DEFAULT_CONNECT_TIMEOUT_MS = 1000;

/** One session per process and endpoint (and connect timeout), shared by every client. */
const sessions = new Map();

function noop() {}

/**
 * Frames queued in one turn of the event loop are written together at its
 * end, or as soon as this many have gathered: under load, the runtime can
 * start on the first ones while this thread is still busy with the rest.
 * A frame with nothing else outstanding (no call awaiting its outcome, no
 * other task running) is written at once, in the same native call: there
 * is nothing to gather it with.
 */
const FLUSH_EVERY = 32;

/**
 * A process's connection to the runtime. Invocations and publishes are
 * submitted with one synchronous native call each; their outcomes come back
 * in batches through one callback (one wake-up of this thread for every
 * reply that arrived together), and settle the Promise of each call.
 * Every method resolves with its value or rejects with an EdgeFCError.
 */
class Session {
  /** `open(onCompletions)` makes the NativeSession. */
  constructor(open) {
    // Each call awaiting its outcome has a tag: its index in these arrays,
    // taken again once its outcome came (the addon gives each tag exactly
    // one outcome), so they grow to the most calls ever outstanding at once.
    this._resolves = [];
    this._rejects = [];
    this._freeTags = [];
    this._outstanding = 0;
    /** Tasks handed to this worker's handlers and not yet reported. */
    this._running = 0;
    // The native callback does not keep the process alive; this timer does,
    // while calls are outstanding (like an open socket with a request on it).
    this._keepAlive = setInterval(noop, 1 << 30);
    this._keepAlive.unref();
    this.native = open((arena, count, lent) => this._complete(readOutcomes(arena, count, lent)));
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

  /**
   * The worker's report of a finished task (`status` 0 for 200,
   * `replyContext` '' for none); written at once when no other task is
   * running, else with this turn's other frames. Throws an EdgeFCError.
   */
  completeTask(id, functionError, body, status = 0, replyContext = '') {
    const alone = this._running === 1 && this._queued === 0;
    this._running -= 1;
    try {
      this.native.completeTask(id, functionError, status, replyContext, body, alone);
    } finally {
      if (!alone) {
        this.scheduleFlush();
      }
    }
  }

  /** Counts tasks handed to the handlers, for `completeTask`. */
  startTasks(count) {
    this._running += count;
  }

  open() {
    return this._native(() => this.native.open());
  }

  /**
   * Resolves with the outcome: `{functionError, statusCode, replyContext,
   * payload}` of a Sync call, `{acceptedId}` of an Async one.
   * `defaultTimeoutSecs` is the timeout the caller's API implies for
   * functions that configure none (0: none); `callerTimeoutMs` how long the
   * caller waits (0: not said), a remote call's timeout.
   */
  invoke(target, asynchronous, invokerContext, payload, defaultTimeoutSecs = 0, callerTimeoutMs = 0) {
    return this._submit((tag, alone) => this.native.submitInvoke(
      tag, target, asynchronous, defaultTimeoutSecs, callerTimeoutMs, invokerContext, payload, alone,
    ));
  }

  /** Resolves with `{acceptedId}`, the message id. */
  publish(topic, payload) {
    return this._submit((tag, alone) => this.native.submitPublish(tag, topic, payload, alone));
  }

  /** Resolves with the parsed JSON answer of a runtime service. */
  async query(operation) {
    return JSON.parse(await this._native(() => this.native.query(operation)));
  }

  subscribe(topicFilter) {
    return this._native(() => this.native.subscribe(topicFilter));
  }

  nextMessages() {
    return this.native.nextMessages();
  }

  /** Messages dropped because more than 1,024 (or 8 MiB) were waiting for nextMessages(). */
  droppedMessages() {
    return this.native.droppedMessages();
  }

  async _native(call) {
    try {
      return await call();
    } catch (err) {
      throw fromNative(err);
    }
  }

  _submit(send) {
    return new Promise((resolve, reject) => {
      const alone = this._outstanding === 0 && this._queued === 0;
      const tag = this._freeTags.length > 0 ? this._freeTags.pop() : this._resolves.length;
      try {
        send(tag, alone);
      } catch (err) {
        this._freeTags.push(tag);
        reject(fromNative(err));
        return;
      }
      if (this._outstanding === 0) {
        this._keepAlive.ref();
      }
      this._outstanding += 1;
      this._resolves[tag] = resolve;
      this._rejects[tag] = reject;
      if (!alone) {
        this.scheduleFlush();
      }
    });
  }

  _complete(outcomes) {
    for (const outcome of outcomes) {
      const { tag } = outcome;
      const resolve = this._resolves[tag];
      if (resolve !== undefined) {
        const reject = this._rejects[tag];
        this._resolves[tag] = undefined;
        this._rejects[tag] = undefined;
        this._freeTags.push(tag);
        this._outstanding -= 1;
        if (outcome.failure) {
          reject(fromNative(outcome.failure));
        } else {
          resolve(outcome);
        }
      }
    }
    if (this._outstanding === 0) {
      this._keepAlive.unref();
    }
  }
}

/** In a worker: its session, on the connection the runtime handed it. */
let workerSession = null;

/** The endpoint of a hosted function's clients that name no other: their worker's own connection. */
const WORKER_ENDPOINT = Object.freeze({ worker: true });

function sessionFor(endpoint, connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS) {
  if (endpoint === WORKER_ENDPOINT) {
    return workerSession;
  }
  const id = `${endpoint.socketPath}\0${endpoint.token}\0${connectTimeoutMs}`;
  let session = sessions.get(id);
  if (session === undefined) {
    session = new Session((onCompletions) => new native.NativeSession(endpoint.socketPath, endpoint.token,
      connectTimeoutMs, onCompletions));
    sessions.set(id, session);
  }
  return session;
}

/**
 * The worker's session, on the connection inherited at descriptor `fd`,
 * which also receives its function's tasks through `onTasks` (`[]` once
 * the connection closed). The function's own clients share it.
 */
function servingSession(fd, onTasks) {
  const session = new Session((onCompletions) => native.NativeSession.inherited(fd, onCompletions,
    (arena, count, lent) => {
      session.startTasks(count);
      onTasks(readTasks(arena, count, lent));
    }));
  workerSession = session;
  return workerSession;
}

/** Whether this process is a worker, whose clients use its connection by default. */
function inWorker() {
  return workerSession !== null;
}

module.exports = { sessionFor, servingSession, inWorker, WORKER_ENDPOINT };

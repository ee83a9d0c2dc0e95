'use strict';

// How a task ends, whatever the flavor of its handler: once, with a body
// (and, for a caller that came through an API facade, what the body is)
// or with a function error in Function Compute's shape.

const { encodeReply } = require('../compat/call');
const { JSON_TYPE, asJsonIfStructured } = require('../compat/values');

const NO_ERROR = 0;
const HANDLED = 1;
const UNHANDLED = 2;

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

function isThenable(value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
}

class TaskOutcome {
  /** `call` is the facade's description of the call, or null for a linkedge caller. */
  constructor(session, task, call) {
    this._session = session;
    this._task = task;
    this._call = call;
    this._finished = false;
  }

  /**
   * The handler's answer: `{payload, contentType}` and, from handlers that
   * speak HTTP, `{status, headers}`. The content type and headers reach
   * only callers that came through an API facade (they alone read them).
   */
  succeed(answer, { status = 0, headers } = {}) {
    if (this._call === null) {
      // A linkedge caller reads no content type: it gets JSON where a structured clone was made.
      this._finish(NO_ERROR, asJsonIfStructured(answer.payload, answer.contentType).payload, status, '');
      return;
    }
    const replyContext = encodeReply({ contentType: answer.contentType, headers, requestId: this._task.requestId });
    this._finish(NO_ERROR, answer.payload, status, replyContext);
  }

  /** A Node-style `callback(err, value)` that ends the task: `err` as Handled, `value` through `encode`. */
  callback(encode) {
    return (err, value) => {
      if (err !== null && err !== undefined) {
        this.handled(err);
      } else {
        this.succeedWith(() => encode(value));
      }
    };
  }

  /** The handler reported `err` (a callback's first argument). */
  handled(err) {
    this._fail(HANDLED, err);
  }

  /** The handler threw or rejected with `err`. */
  unhandled(err) {
    this._fail(UNHANDLED, err);
  }

  /** Runs `encode()` for the answer; an error there (a value JSON cannot hold) is the handler's (Unhandled). */
  succeedWith(encode, meta) {
    let encoded;
    try {
      encoded = encode();
    } catch (err) {
      this.unhandled(new TypeError(`the result cannot be serialized: ${err.message}`));
      return;
    }
    this.succeed(encoded, meta);
  }

  _fail(functionError, err) {
    const replyContext = this._call === null ? '' : encodeReply({ contentType: JSON_TYPE, requestId: this._task.requestId });
    this._finish(functionError, errorBody(err), 0, replyContext);
  }

  _finish(functionError, body, status, replyContext) {
    if (this._finished) {
      return;
    }
    this._finished = true;
    try {
      this._session.completeTask(this._task.id, functionError, body, status, replyContext);
    } catch (err) {
      console.error(`edgefc: could not report request ${this._task.requestId}: ${err.message}`);
    }
  }
}

module.exports = { TaskOutcome, isThenable };

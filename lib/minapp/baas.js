'use strict';

// 知晓云's `BaaS.invoke(functionName, params, sync = true)` over the local
// runtime. It resolves `{code, data, error}`: `code` 0 with the function's
// answer, 1 with `error.message` when the function failed. Refusals reject
// with an Error whose numeric `code` and `'<code>: <text>'` message are the
// platform's (404 not found, 400 cannot run it now, 600/601 no runtime).

const { ErrorCode } = require('../core/errors');
const {
  invokeByName, readReply, readValue, FacadeLink,
} = require('../compat/call');
const { encodeValue, payloadText } = require('../compat/values');

/** The platform's limits on a run, for functions whose config sets no timeoutMs. */
const SYNC_TIMEOUT_SECS = 5;
const ASYNC_TIMEOUT_SECS = 300;

/** The platform's HError: a plain Error with a numeric `code` and the code in its message. */
function hError(code, text, cause) {
  const error = new Error(`${code}: ${text}`, cause === undefined ? undefined : { cause });
  error.code = code;
  return error;
}

function refusal(err) {
  switch (err.code) {
    case ErrorCode.FUNCTION_NOT_FOUND:
      return hError(404, 'not found', err);
    case ErrorCode.RUNTIME_UNAVAILABLE:
    case ErrorCode.GATEWAY_OFFLINE:
      return hError(600, 'network disconnected', err);
    case ErrorCode.TIMEOUT:
      return hError(601, 'request timeout', err);
    case ErrorCode.UNAUTHORIZED:
      return hError(401, err.message, err);
    default:
      return hError(400, err.message, err);
  }
}

/** What a failed function says, as the platform shows it: `{message, stack}`. */
function failure(reply) {
  if (reply.functionError) {
    const { errorMessage = '', errorType = 'Error', stackTrace } = reply.error;
    const frames = Array.isArray(stackTrace) ? stackTrace.map((line) => `    ${line}`) : [];
    return { message: String(errorMessage), stack: [`${errorType}: ${errorMessage}`, ...frames].join('\n') };
  }
  return { message: `the function answered with status ${reply.status}: ${payloadText(reply.payload)}` };
}

class MinappBaaS {
  constructor() {
    this._link = new FacadeLink();
  }

  /**
   * Takes a client id, as on the platform (edgefc needs none);
   * `options.edgefc` says where the runtime is, as FCClient's options do.
   * Calling it is optional.
   */
  init(_clientId, options = {}) {
    this._link.configure(options.edgefc);
  }

  /** See the file's comment. A missing function name throws at once, as on the platform. */
  invoke(functionName, params, sync = true) {
    if (!functionName) {
      throw hError(605, 'incorrect parameter type');
    }
    return this._invoke(String(functionName), params, sync !== false);
  }

  /** Deprecated on the platform; the same call. */
  invokeFunction(functionName, params, sync = true) {
    return this.invoke(functionName, params, sync);
  }

  async _invoke(functionName, params, sync) {
    const { payload, contentType } = encodeValue(params);
    const request = {
      asynchronous: !sync,
      defaultTimeoutSecs: sync ? SYNC_TIMEOUT_SECS : ASYNC_TIMEOUT_SECS,
      call: { api: 'minapp', contentType },
      payload,
    };
    let outcome;
    try {
      outcome = await invokeByName(this._link.get(), functionName, request);
    } catch (err) {
      throw refusal(err);
    }
    if (!sync) {
      return { error: {}, code: 0, data: { status: 'ok' } };
    }
    const reply = readReply(outcome);
    if (reply.functionError || reply.status >= 300) {
      return { error: failure(reply), code: 1, data: null };
    }
    const data = readValue(reply);
    return { error: {}, code: 0, data: data === undefined ? null : data };
  }
}

/** One per process, as the platform's global. */
module.exports = new MinappBaaS();

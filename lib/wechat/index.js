'use strict';

// `require('edgefc/wechat')`, which hosted functions also reach as
// `require('wx-server-sdk')`: WeChat cloud's `cloud.callFunction` over the
// local runtime. It returns a Promise of `{result, requestID, errMsg}` and
// calls `success`/`fail`/`complete` when given. Failures are Errors with
// WeChat's `errCode` and `errMsg`. `wx.cloud` is the mini-program side of
// the same call (its errMsg says `cloud.callFunction:…`).

const { ErrorCode } = require('../core/errors');
const { withTimeout } = require('../core/deadline');
const {
  invokeByName, readReply, readValue, FacadeLink,
} = require('../compat/call');
const { encodeValue, payloadText } = require('../compat/values');

const DYNAMIC_CURRENT_ENV = Symbol.for('DYNAMIC_CURRENT_ENV');

/** WeChat's texts for the codes this facade gives (wx-server-sdk's ERR_CODE). */
const ERROR_TEXT = new Map([
  [-1, 'unknown error'],
  [-501000, 'FunctionName parameter could not be found.'],
  [-501001, 'resource system error'],
  [-501004, 'resource concurrency exceeds limit'],
  [-501007, 'invalid parameter'],
  [-504002, 'functions execute fail'],
]);

/** The runtime's refusals, as WeChat's codes for the same trouble. */
const REFUSAL_CODE = new Map([
  [ErrorCode.FUNCTION_NOT_FOUND, -501000],
  [ErrorCode.QUEUE_FULL, -501004],
  [ErrorCode.TOO_MANY_CONNECTIONS, -501004],
  [ErrorCode.SHUTTING_DOWN, -501001],
  [ErrorCode.GATEWAY_OFFLINE, -501001],
  [ErrorCode.PAYLOAD_TOO_LARGE, -501007],
  [ErrorCode.INVALID_PARAMS, -501007],
]);

function typeName(value) {
  return value === null ? 'null' : typeof value;
}

function isPlainData(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function noop() {}

/** Runs a caller's callback; what it throws is reported, as nothing else could catch it. */
function runCallback(callback, ...args) {
  try {
    callback(...args);
  } catch (err) {
    console.error('edgefc: a callFunction callback threw:', err);
  }
}

class Cloud {
  /** `prefix` is what errMsg starts with: 'callFunction' on the server, 'cloud.callFunction' in a mini program. */
  constructor(prefix) {
    this._prefix = prefix;
    this._options = {};
    this._link = new FacadeLink();
    this.DYNAMIC_CURRENT_ENV = DYNAMIC_CURRENT_ENV;
  }

  /**
   * `env` and `timeout` as WeChat's; `edgefc` says where the runtime is,
   * as FCClient's options do. Calling it is optional.
   */
  init(options = {}) {
    this._options = options;
    this._link.configure(options.edgefc);
  }

  /** The caller's WeChat context: a gateway has no WeChat users, so the ids are empty. */
  getWXContext() {
    const env = this._options.env;
    return {
      OPENID: '', APPID: '', UNIONID: '', ENV: typeof env === 'string' ? env : 'edgefc', SOURCE: 'scf',
    };
  }

  /** See the file's comment. */
  callFunction(params) {
    const called = this._callFunction(params);
    if (isPlainData(params) && (params.success || params.fail || params.complete)) {
      const { success = noop, fail = noop, complete = noop } = params;
      called.then((result) => {
        runCallback(success, result);
        runCallback(complete);
      }, (err) => {
        runCallback(fail, err);
        runCallback(complete);
      });
      // With callbacks the Promise is there for who wants it, never an unhandled rejection.
      called.catch(noop);
    }
    return called;
  }

  async _callFunction(params) {
    if (!isPlainData(params)) {
      const error = new Error(`${this._prefix}:fail undefined . Params for callFunction must be an object instead of ${typeName(params)}`);
      throw Object.assign(error, { errCode: -1, errMsg: error.message });
    }
    const { name, data } = params;
    if (typeof name !== 'string') {
      throw this._invalid(`parameter.name should be string instead of ${typeName(name)};`);
    }
    if (data !== undefined && !isPlainData(data)) {
      throw this._invalid(`parameter.data should be object instead of ${typeName(data)};`);
    }
    const { payload, contentType } = encodeValue(data === undefined ? {} : data);
    const timeout = params.timeout !== undefined ? params.timeout : this._options.timeout;
    let outcome;
    try {
      const call = invokeByName(this._link.get(), name, { call: { api: 'wechat', contentType }, payload });
      const waited = typeof timeout === 'number' && timeout > 0 ? timeout : undefined;
      outcome = await withTimeout(call, waited, () => Object.assign(new Error('ESOCKETTIMEDOUT'), { code: 'ESOCKETTIMEDOUT' }));
    } catch (err) {
      throw this._refusal(err);
    }
    const reply = readReply(outcome);
    if (reply.functionError) {
      const detail = `${reply.error.errorType || 'Error'}: ${reply.error.errorMessage || ''}`;
      throw this._failure(-504002, reply.requestId, detail);
    }
    if (reply.status >= 300) {
      throw this._failure(-504002, reply.requestId, `status ${reply.status}: ${payloadText(reply.payload)}`);
    }
    let result = readValue(reply);
    if (typeof result === 'string' && this._prefix === 'callFunction') {
      // As wx-server-sdk (the mini-program side does not): a result that is JSON text arrives parsed.
      try {
        result = JSON.parse(result);
      } catch (err) {
        // Not JSON: the string it is.
      }
    }
    return { result, requestID: reply.requestId, errMsg: `${this._prefix}:ok` };
  }

  _invalid(errMsg) {
    const error = new Error(`errCode: -1 ${ERROR_TEXT.get(-1)} | errMsg: ${errMsg}`);
    error.name = 'CloudSDKError';
    return Object.assign(error, { errCode: -1, errMsg });
  }

  /** A failure WeChat's way; `detail` is the function's error or the runtime's message. */
  _failure(errCode, requestID, detail) {
    const text = ERROR_TEXT.get(errCode).replace(/\.$/, '');
    const request = requestID === undefined ? '' : ` requestID ${requestID},`;
    const message = this._prefix === 'callFunction'
      ? `callFunction:fail ${errCode} ${text}.${request} ${detail}`
      : `cloud.callFunction:fail Error: errCode: ${errCode} ${text} | errMsg: ${detail}`;
    return Object.assign(new Error(message), { errCode, errMsg: message, requestID });
  }

  _refusal(err) {
    const errCode = REFUSAL_CODE.get(err.code);
    if (errCode === undefined) {
      // No runtime, or no answer in time: WeChat's network failures.
      const message = `${this._prefix}:fail ${err.message}`;
      return Object.assign(new Error(message, { cause: err }), { errCode: -1, errMsg: message });
    }
    const failure = this._failure(errCode, undefined, err.message);
    failure.cause = err;
    return failure;
  }
}

const cloud = new Cloud('callFunction');
cloud.wx = { cloud: new Cloud('cloud.callFunction') };
cloud.Cloud = Cloud;

module.exports = cloud;

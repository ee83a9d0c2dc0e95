'use strict';

const { settle } = require('./callback');
const { resolveEndpoint, channelFor } = require('./channel');
const { EdgeFCError, ErrorCode } = require('./errors');
const { invokeRequest } = require('./params');

/** Codes after which a client that found its runtime through a config looks again (it may have restarted). */
const STALE_ENDPOINT_CODES = new Set([ErrorCode.RUNTIME_UNAVAILABLE, ErrorCode.UNAUTHORIZED]);

class FCClient {
  /**
   * Takes no arguments inside a hosted function, as upstream. Elsewhere,
   * `options` says where the runtime is: `{config}` or `{socketPath, token}`;
   * `timeoutMs` bounds how long a call waits for any answer (ERR_TIMEOUT);
   * `connectTimeoutMs` (default 1000) how long connecting may take.
   */
  constructor(options) {
    this._options = options || {};
    this._endpoint = null;
  }

  /**
   * Invokes a function by `functionId`, or by `serviceName` and
   * `functionName`. Sync calls give `{functionError, statusCode, payload}`,
   * Async calls the invocation id. Through `callback(err, data)`, or a
   * Promise when no callback is given.
   */
  invokeFunction(params, callback) {
    return settle(callback, () => this._invoke(invokeRequest(params)));
  }

  async _invoke(request) {
    const outcome = await this._withTimeout(this._channel().invoke(
      request.target, request.asynchronous, request.invokerContext, request.payload,
    ));
    if (outcome.code) {
      if (STALE_ENDPOINT_CODES.has(outcome.code)) {
        this._endpoint = null;
      }
      throw new EdgeFCError(outcome.code, outcome.message);
    }
    if (request.asynchronous) {
      return outcome.invocationId;
    }
    return {
      functionError: outcome.functionError,
      statusCode: outcome.statusCode,
      payload: outcome.payload,
    };
  }

  _channel() {
    if (this._endpoint === null) {
      this._endpoint = resolveEndpoint(this._options);
    }
    return channelFor(this._endpoint, this._options.connectTimeoutMs);
  }

  _withTimeout(call) {
    const timeoutMs = this._options.timeoutMs;
    if (timeoutMs === undefined || timeoutMs === null) {
      return call;
    }
    let timer;
    const expired = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new EdgeFCError(ErrorCode.TIMEOUT,
        `no answer from the edgefc runtime within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([call, expired]).finally(() => clearTimeout(timer));
  }
}

module.exports = FCClient;

'use strict';

const { settle } = require('../core/callback');
const { RuntimeLink } = require('../core/link');
const { invokeRequest, publishRequest } = require('../core/params');

class FCClient {
  /**
   * Takes no arguments inside a hosted function, as upstream. Elsewhere,
   * `options` says where the runtime is: `{config}` or `{socketPath, token}`;
   * `timeoutMs` bounds how long a call waits for any answer (ERR_TIMEOUT);
   * `connectTimeoutMs` (default 1000) how long connecting may take.
   */
  constructor(options) {
    this._link = new RuntimeLink(options);
  }

  /**
   * Invokes a function by `functionId`, or by `serviceName` and
   * `functionName`. Sync calls give `{functionError, statusCode, payload}`,
   * Async calls the invocation id. Through `callback(err, data)`, or a
   * Promise when no callback is given.
   */
  invokeFunction(params, callback) {
    return settle(callback, async () => {
      const request = invokeRequest(params);
      const outcome = await this._link.invoke(
        request.target, request.asynchronous, request.invokerContext, request.payload,
      );
      if (request.asynchronous) {
        return outcome.acceptedId;
      }
      return {
        functionError: outcome.functionError,
        statusCode: outcome.statusCode,
        payload: outcome.payload,
      };
    });
  }

  /**
   * Publishes `{topic, payload}` to the runtime's message router; gives the
   * message id once routed. Never waits for the receiving functions.
   */
  publish(params, callback) {
    return settle(callback, async () => {
      const { topic, payload } = publishRequest(params);
      const outcome = await this._link.call((session) => session.publish(topic, payload));
      return outcome.acceptedId;
    });
  }
}

module.exports = FCClient;

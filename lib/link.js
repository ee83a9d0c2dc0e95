'use strict';

const { resolveEndpoint, channelFor } = require('./channel');
const { EdgeFCError, ErrorCode } = require('./errors');

/** Codes after which a client that found its runtime through a config looks again (it may have restarted). */
const STALE_ENDPOINT_CODES = new Set([ErrorCode.RUNTIME_UNAVAILABLE, ErrorCode.UNAUTHORIZED]);

/**
 * What every client class shares: finding the runtime (lazily, so a client
 * can be built at module load before the runtime is up), the per-call
 * timeout, and turning a failed native outcome into an EdgeFCError.
 */
class RuntimeLink {
  constructor(options) {
    this.options = options || {};
    this._endpoint = null;
  }

  /**
   * Runs `call(channel)`, a native call resolving to an outcome, and returns
   * the outcome, or throws its failure as an EdgeFCError.
   */
  async call(call) {
    if (this._endpoint === null) {
      this._endpoint = resolveEndpoint(this.options);
    }
    const outcome = await this._withTimeout(call(channelFor(this._endpoint, this.options.connectTimeoutMs)));
    if (outcome.code) {
      if (STALE_ENDPOINT_CODES.has(outcome.code)) {
        this._endpoint = null;
      }
      throw new EdgeFCError(outcome.code, outcome.message);
    }
    return outcome;
  }

  _withTimeout(call) {
    const { timeoutMs } = this.options;
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

module.exports = { RuntimeLink };

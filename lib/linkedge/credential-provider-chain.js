'use strict';

const { RuntimeLink } = require('../core/link');

/**
 * Resolves the credentials configured in the runtime's edgefc.json
 * ("credentials"); served to hosted functions only.
 */
class CredentialProviderChain {
  /** No arguments inside a hosted function; elsewhere the FCClient options. */
  constructor(options) {
    this._link = new RuntimeLink(options);
  }

  /** A Promise of `{accessKeyId, accessKeySecret, securityToken}`; rejects with ERR_CREDENTIALS_UNAVAILABLE when none are configured. */
  async resolvePromise() {
    return this._link.call((session) => session.query('credentials'));
  }
}

module.exports = CredentialProviderChain;

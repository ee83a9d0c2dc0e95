'use strict';

const { RuntimeLink } = require('../core/link');

/**
 * Resolves the credentials configured in the runtime's edgefc.json
 * ("credentials"); served to hosted functions only.
 */
class CredentialProviderChain {
  /**
   * No arguments inside a hosted function; elsewhere the FCClient options.
   * Without options it throws where upstream does: when the environment has
   * no DEFFAULT_CREDENTIALS_RELATIVE_URI (upstream's spelling), which every
   * hosted function has.
   */
  constructor(options) {
    if (options === undefined && !process.env.DEFFAULT_CREDENTIALS_RELATIVE_URI) {
      throw new Error('Can not construct default credential provider!');
    }
    this._link = new RuntimeLink(options);
  }

  /** A Promise of `{accessKeyId, accessKeySecret, securityToken}`; rejects with ERR_CREDENTIALS_UNAVAILABLE when none are configured. */
  async resolvePromise() {
    return this._link.call((session) => session.query('credentials'));
  }
}

module.exports = CredentialProviderChain;

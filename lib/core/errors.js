'use strict';

const native = require('../../native.js');

/** Every code an EdgeFCError can carry; the Rust core owns the list. */
const ErrorCode = Object.freeze(
  Object.fromEntries(native.errorCodes().map((code) => [code.replace(/^ERR_/, ''), code])),
);

/** The one error type of this package: `code` is stable, `message` is for people. */
class EdgeFCError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'EdgeFCError';
    this.code = code;
  }
}

function invalidParams(message) {
  return new EdgeFCError(ErrorCode.INVALID_PARAMS, message);
}

/**
 * The one place a failure of the addon becomes an EdgeFCError: a thrown or
 * rejected native error, or an outcome's `failure`, both `{code, message}`.
 * Anything without an edgefc code is a bug, reported as ERR_INTERNAL.
 */
function fromNative(failure) {
  if (failure instanceof EdgeFCError) {
    return failure;
  }
  const code = typeof failure.code === 'string' && failure.code.startsWith('ERR_') ? failure.code : ErrorCode.INTERNAL;
  return new EdgeFCError(code, failure.message);
}

module.exports = {
  EdgeFCError, ErrorCode, invalidParams, fromNative,
};

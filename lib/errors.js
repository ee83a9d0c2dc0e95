'use strict';

const native = require('../native.js');

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

module.exports = { EdgeFCError, ErrorCode, invalidParams };

'use strict';

const { checkCallback } = require('./params');

/**
 * Settles `work` (a function returning a Promise) the way the upstream SDK
 * does, through `callback(err, data)`, or returns the Promise when no
 * callback is given. The callback always runs on a later tick and outside
 * the Promise chain, so an exception it throws is not swallowed.
 */
function settle(callback, work) {
  checkCallback(callback);
  let promise;
  try {
    promise = Promise.resolve(work());
  } catch (err) {
    promise = Promise.reject(err);
  }
  if (typeof callback !== 'function') {
    return promise;
  }
  promise.then(
    (data) => process.nextTick(callback, null, data),
    (err) => process.nextTick(callback, err),
  );
  return undefined;
}

module.exports = { settle };

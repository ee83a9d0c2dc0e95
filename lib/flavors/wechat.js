'use strict';

// WeChat cloud functions: `exports.main = async (event, context) => result`.
// The event is the caller's data (plus userInfo); the returned value, or
// what a returned Promise resolves with, is the result. Older code takes a
// callback, `(event, context, cb)`; a value returned there still completes
// the call (seed 004's `add` does so).

const { loadExport } = require('./load');
const { isThenable } = require('./outcome');
const { decodeValue, encodeValue } = require('../compat/values');

/** The caller's data: a plain object gets `userInfo`, as a mini program's call does. */
function eventOf(task, call) {
  const data = decodeValue(task.payload, call && call.contentType, { sniffJson: true });
  if (data === undefined) {
    return { userInfo: userInfo() };
  }
  if (data !== null && typeof data === 'object' && !Array.isArray(data) && !Buffer.isBuffer(data) && !('userInfo' in data)) {
    return { ...data, userInfo: userInfo() };
  }
  return data;
}

/** A gateway has no WeChat users: the fields are there, empty. */
function userInfo() {
  return { appId: '', openId: '' };
}

/** Tencent SCF's context, with edgefc's own fields (invocationId, attempt, ...). */
function contextOf(context, task) {
  const env = process.env;
  return {
    ...context,
    request_id: task.requestId,
    function_name: env.EDGEFC_FUNCTION_NAME,
    function_version: '$LATEST',
    namespace: env.EDGEFC_SERVICE_NAME,
    memory_limit_in_mb: Number(env.EDGEFC_MEMORY_SIZE_MB),
    time_limit_in_ms: Number(env.EDGEFC_TIMEOUT_MS),
    environ: '',
    environment: '{}',
  };
}

function run(handler, task, { context, call }, outcome) {
  const succeed = (result) => outcome.succeedWith(() => encodeValue(result));
  const returned = handler(eventOf(task, call), contextOf(context, task), outcome.callback(encodeValue));
  if (isThenable(returned)) {
    returned.then(succeed, (err) => outcome.unhandled(err));
  } else if (returned !== undefined || handler.length < 3) {
    succeed(returned);
  }
}

module.exports = { load: loadExport, run };

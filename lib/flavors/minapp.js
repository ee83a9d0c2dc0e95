'use strict';

// 知晓云 cloud functions: `exports.main = function (event, callback)` or
// `async function (event)`. `event.data` is what the caller passed. As on
// that platform, an async function that resolves with `undefined` has not
// answered: the call ends with its callback, or at its timeout.

const { loadExport } = require('./load');
const { isThenable } = require('./outcome');
const { decodeValue, encodeValue } = require('../compat/values');
const BaaS = require('../minapp/baas');

function eventOf(task, call) {
  const data = decodeValue(task.payload, call && call.contentType, { sniffJson: true });
  const env = process.env;
  return {
    data: data === undefined ? {} : data,
    eventType: call !== null && call.api === 'minapp' ? 'sdk' : 'cloud_function',
    jobId: task.id,
    memoryLimitInMB: Number(env.EDGEFC_MEMORY_SIZE_MB),
    timeLimitInMS: Number(env.EDGEFC_TIMEOUT_MS),
    miniappId: 0,
  };
}

function run(handler, task, { call }, outcome) {
  const returned = handler(eventOf(task, call), outcome.callback(encodeValue));
  if (isThenable(returned)) {
    returned.then((result) => {
      if (result !== undefined) {
        outcome.succeedWith(() => encodeValue(result));
      }
    }, (err) => outcome.unhandled(err));
  }
}

/** 知晓云 functions find `BaaS` as a global, as on that platform. */
function load(codeDir, handlerName) {
  globalThis.BaaS = BaaS;
  return loadExport(codeDir, handlerName);
}

module.exports = { load, run };

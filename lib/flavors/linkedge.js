'use strict';

// Link IoT Edge / Function Compute: handler(event, context, callback), the
// event being the payload as sent (a String or a Buffer).

const { loadExport } = require('./load');
const { isThenable } = require('./outcome');
const {
  TEXT_TYPE, BINARY_TYPE, JSON_TYPE, isBinary, asBuffer, asJsonIfStructured,
} = require('../compat/values');

/** A string or bytes go back as they are; anything else as JSON (binary inside as JSON makes it). */
function encodeResult(result) {
  if (result === undefined) {
    return { payload: '', contentType: undefined };
  }
  if (typeof result === 'string') {
    return { payload: result, contentType: TEXT_TYPE };
  }
  if (isBinary(result)) {
    return { payload: asBuffer(result), contentType: BINARY_TYPE };
  }
  // A function, a Symbol, or a toJSON that returns undefined serialize to nothing.
  const json = JSON.stringify(result);
  return json === undefined ? { payload: '', contentType: undefined } : { payload: json, contentType: JSON_TYPE };
}

function run(handler, task, { context, call }, outcome) {
  // A structured clone from another API's caller reaches this handler as the JSON it would have sent.
  const event = call === null ? task.payload : asJsonIfStructured(task.payload, call.contentType).payload;
  const callback = (err, result) => {
    if (err !== null && err !== undefined) {
      outcome.handled(err);
    } else {
      outcome.succeedWith(() => encodeResult(result));
    }
  };
  const returned = handler(event, context, callback);
  if (isThenable(returned)) {
    returned.then((result) => outcome.succeedWith(() => encodeResult(result)), (err) => outcome.unhandled(err));
  }
}

module.exports = { load: loadExport, run };

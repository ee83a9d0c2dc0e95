'use strict';

// Link IoT Edge / Function Compute: handler(event, context, callback), the
// event being the payload as sent (a String or a Buffer).

const { loadExport } = require('./load');
const { isThenable } = require('./outcome');
const { encodeValue, asJsonIfStructured } = require('../compat/values');

/** A string or bytes go back as they are; anything else as JSON, binary inside as JSON makes it. */
function encodeResult(result) {
  return encodeValue(result, { structured: false });
}

function run(handler, task, { context, call }, outcome) {
  // A structured clone from another API's caller reaches this handler as the JSON it would have sent.
  const event = call === null ? task.payload : asJsonIfStructured(task.payload, call.contentType).payload;
  const returned = handler(event, context, outcome.callback(encodeResult));
  if (isThenable(returned)) {
    returned.then((result) => outcome.succeedWith(() => encodeResult(result)), (err) => outcome.unhandled(err));
  }
}

module.exports = { load: loadExport, run };

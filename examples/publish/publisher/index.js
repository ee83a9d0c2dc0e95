'use strict';

// A long-lived publisher: its top-level code runs as soon as the runtime
// starts it, and it publishes a greeting to /hello/world every 5 seconds.

const leSdk = require('linkedge-core-sdk');

const iotData = new leSdk.IoTData();
let sent = 0;

function greet() {
  sent += 1;
  iotData.publish({ topic: '/hello/world', payload: `Hello from the edge, message ${sent}` }, (err, messageId) => {
    if (err) {
      console.log(`publish failed: ${err.code} ${err.message}`);
    } else {
      console.log(`published message ${sent} as ${messageId}`);
    }
  });
}

greet();
setInterval(greet, 5000);

// Long-lived functions can still be invoked; this one just reports its count.
exports.handler = (event, context, callback) => {
  callback(null, { sent });
};

'use strict';

// Runs on gateway gw1. It calls Site2/report as if it were a local function:
// gw1's remoteFunctions maps that name to gateway gw2.
const leSdk = require('linkedge-core-sdk');

const fc = new leSdk.FCClient();

module.exports.handler = function (event, context, callback) {
  const reading = JSON.parse(event.toString());
  fc.invokeFunction({
    serviceName: 'Site2',
    functionName: 'report',
    payload: JSON.stringify({ from: 'gw1/sensor', celsius: reading.celsius }),
  }, (err, data) => {
    if (err) {
      callback(err);
      return;
    }
    callback(null, `gw2 answered: ${data.payload}`);
  });
};

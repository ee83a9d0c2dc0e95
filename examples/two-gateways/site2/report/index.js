'use strict';

// Runs on gateway gw2, which lists it in exposedFunctions: other gateways may call it.
module.exports.handler = function (event, context, callback) {
  if (Buffer.isBuffer(event)) {
    callback(null, Buffer.concat([Buffer.from('bytes back: '), event]));
    return;
  }
  const report = JSON.parse(event);
  if (typeof report.celsius !== 'number') {
    callback(new Error('a report needs a number of degrees'));
    return;
  }
  callback(null, `${report.from} reported ${report.celsius} °C on gw2`);
};

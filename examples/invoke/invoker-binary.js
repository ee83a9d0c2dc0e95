'use strict';

// Invokes the invokee Sync with a binary payload and an invoker context,
// then logs the result it got back.

const leSdk = require('linkedge-core-sdk');

const fc = new leSdk.FCClient();

exports.handler = (event, context, callback) => {
  const invokerContext = Buffer.from(JSON.stringify({ custom: { caller: 'binary invoker' } })).toString('base64');
  fc.invokeFunction({
    functionId: 'invokee',
    invocationType: 'Sync',
    invokerContext,
    payload: Buffer.from([0x65, 0x64, 0x67, 0x65, 0x00, 0xff]),
  }, (err, data) => {
    if (err) {
      console.log(`invoke failed: ${err.code} ${err.message}`);
      callback(err);
      return;
    }
    console.log('invokee answered:', data);
    callback(null, data.payload);
  });
};

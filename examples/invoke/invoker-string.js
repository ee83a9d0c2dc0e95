'use strict';

// Invokes the invokee Sync with a string payload and an invoker context,
// then logs the result it got back.

const leSdk = require('linkedge-core-sdk');

const fc = new leSdk.FCClient();

exports.handler = (event, context, callback) => {
  const invokerContext = Buffer.from(JSON.stringify({ custom: { caller: 'string invoker' } })).toString('base64');
  fc.invokeFunction({
    functionId: 'invokee',
    invocationType: 'Sync',
    invokerContext,
    payload: 'A string from the invoker.',
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

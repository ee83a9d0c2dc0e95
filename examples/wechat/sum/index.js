'use strict';

// Seed 004's complete cloud function: it calls `add` through wx-server-sdk,
// which resolves to edgefc's facade on the gateway.
const cloud = require('wx-server-sdk');

cloud.init({
  env: cloud.DYNAMIC_CURRENT_ENV,
});

exports.main = async (event) => {
  const res = await cloud.callFunction({
    name: 'add',
    data: { x: event.x, y: event.y },
  });
  return { sum: res.result, via: 'wx-server-sdk', bytes: event.bytes };
};

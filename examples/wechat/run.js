'use strict';

// WeChat cloud functions on an embedded runtime: a mini program's
// wx.cloud.callFunction, and a cloud function calling another.
// Run: node examples/wechat/run.js

const { runExample } = require('../embedded');
const cloud = require('../../wechat');

runExample(__dirname, async () => {
  const { wx } = cloud;
  const added = await wx.cloud.callFunction({ name: 'add', data: { x: 1, y: 2 } });
  console.log('wx.cloud.callFunction add ->', added.result, added.errMsg);
  const summed = await cloud.callFunction({ name: 'sum', data: { x: 40, y: 2, bytes: Buffer.from('raw bytes') } });
  console.log('cloud.callFunction sum ->', summed.result);
  await cloud.callFunction({ name: 'nothing-here' }).catch((err) => console.log('unknown function ->', err.errCode, err.errMsg));
});

'use strict';

// WeChat cloud functions on an embedded runtime: a mini program's
// wx.cloud.callFunction, and a cloud function calling another.
// Run: node examples/wechat/run.js

const path = require('path');

const { startRuntime } = require('../..');
const cloud = require('../../wechat');

async function main() {
  const config = path.join(__dirname, 'edgefc.json');
  const runtime = await startRuntime(config);
  // The facade finds the runtime as FCClient does: here through its config.
  process.env.EDGEFC_CONFIG = config;
  try {
    const { wx } = cloud;
    const added = await wx.cloud.callFunction({ name: 'add', data: { x: 1, y: 2 } });
    console.log('wx.cloud.callFunction add ->', added.result, added.errMsg);
    const summed = await cloud.callFunction({ name: 'sum', data: { x: 40, y: 2, bytes: Buffer.from('raw bytes') } });
    console.log('cloud.callFunction sum ->', summed.result);
    await cloud.callFunction({ name: 'nothing-here' }).catch((err) => console.log('unknown function ->', err.errCode, err.errMsg));
  } finally {
    await runtime.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

'use strict';

// 知晓云 cloud functions on an embedded runtime: BaaS.invoke, sync and async.
// Run: node examples/minapp/run.js

const path = require('path');

const { startRuntime } = require('../..');
const { wx } = require('../../minapp');

async function main() {
  const config = path.join(__dirname, 'edgefc.json');
  const runtime = await startRuntime(config);
  process.env.EDGEFC_CONFIG = config;
  try {
    console.log('sync ->', await wx.BaaS.invoke('helloWorld', { name: 'allen' }));
    console.log('async ->', await wx.BaaS.invoke('helloWorld', { name: 'later' }, false));
    console.log('function to function ->', await wx.BaaS.invoke('greeter', { name: 'gateway' }));
    await wx.BaaS.invoke('nothing-here', {}).catch((err) => console.log('unknown function ->', err.code, err.message));
  } finally {
    await runtime.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

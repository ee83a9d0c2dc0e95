'use strict';

// 知晓云 cloud functions on an embedded runtime: BaaS.invoke, sync and async.
// Run: node examples/minapp/run.js

const { runExample } = require('../embedded');
const { wx } = require('../../minapp');

runExample(__dirname, async () => {
  console.log('sync ->', await wx.BaaS.invoke('helloWorld', { name: 'allen' }));
  console.log('async ->', await wx.BaaS.invoke('helloWorld', { name: 'later' }, false));
  console.log('function to function ->', await wx.BaaS.invoke('greeter', { name: 'gateway' }));
  await wx.BaaS.invoke('nothing-here', {}).catch((err) => console.log('unknown function ->', err.code, err.message));
});

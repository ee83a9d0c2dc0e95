'use strict';

// A Supabase Edge Function on an embedded runtime, called with
// supabase-js's functions.invoke, MemFire's way (a function address) too.
// Run: node examples/supabase/run.js

const { runExample } = require('../embedded');
const { createClient, FunctionsHttpError, FunctionsRelayError } = require('../../supabase');

runExample(__dirname, async () => {
  // The URL and key are what the original API takes; they need not point anywhere.
  const supabase = createClient('https://your-project.supabase.co', 'anon-key');
  const { data } = await supabase.functions.invoke('hello', { body: { name: 'Functions' } });
  console.log('invoke hello ->', data);
  const memfire = await supabase.functions.invoke('https://functions1.memfiredb.com/xxxxxxxxx/hello?action=pay', {
    method: 'POST', body: { name: 'MemFire' },
  });
  console.log('invoke by address ->', memfire.data);
  console.log('GET with a sub-path ->', (await supabase.functions.invoke('hello/status?verbose=1', { method: 'GET' })).data);
  const bad = await supabase.functions.invoke('hello', { body: {} });
  if (bad.error instanceof FunctionsHttpError) {
    console.log('non-2xx ->', bad.error.context.status, await bad.error.context.json());
  }
  const missing = await supabase.functions.invoke('nothing-here');
  if (missing.error instanceof FunctionsRelayError) {
    console.log('unknown function ->', missing.error.context.status, await missing.error.context.json());
  }
});

'use strict';

// The benchmark's smoke run completes and prints its tables (speed is never
// asserted: the figures are for people, measured by `npm run bench`).

const assert = require('assert/strict');
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { it } = require('node:test');

const { ROOT } = require('./helpers');

it('npm run bench -- --quick completes and prints every table', { timeout: 300000 }, () => {
  const output = execFileSync(process.execPath, [path.join(ROOT, 'benches', 'run.js'), '--quick'], { encoding: 'utf8' });
  for (const heading of ['Sync invoke round trip, 1 in flight', 'Sync invoke throughput', 'Delivery throughput', 'Cost:']) {
    assert.ok(output.includes(heading), `missing "${heading}" in:\n${output}`);
  }
  for (const design of ['edgefc', 'HTTP baseline', 'wire floor']) {
    assert.ok(output.includes(design), design);
  }
  assert.match(output, /\| 1 MiB \| 256 \| [\d,]+ \|/);
  assert.match(output, /\| runtime RSS, idle \| [\d.]+ MiB \|/);
  assert.match(output, /\| calls\/s, 256 in flight \| [\d,]+ \| [\d,]+ \| [\d.]+ \|/);
  assert.match(output, /Recording one invocation's metrics \(.*\): [\d,]+ ns on one thread \([\d.]+% of the runtime's CPU per invoke, [\d.]+% of a call's CPU in caller, runtime and worker\); [\d,]+ ns with \d+ threads/);
  if (['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].some((file) => fs.existsSync(file))) {
    assert.match(output, /Cross-gateway Sync, 64 B/);
    assert.match(output, /\| 256 \| [\d,.]+ \| [\d,.]+ \| [\d,]+ \| [\d,.]+ \| [\d,]+ \|/);
  }
});

'use strict';

// index.d.ts accepts the upstream usage and our additions, and rejects wrong
// shapes (the @ts-expect-error lines in types/usage.ts).

const assert = require('assert/strict');
const { execFileSync } = require('child_process');
const path = require('path');
const { it } = require('node:test');

const { ROOT } = require('./helpers');

it('index.d.ts type-checks the documented usage', { timeout: 120000 }, () => {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const output = (() => {
    try {
      return execFileSync(process.execPath, [tsc, '--noEmit', '--strict', '--types', 'node', path.join(__dirname, 'types', 'usage.ts')], {
        cwd: ROOT, encoding: 'utf8',
      });
    } catch (err) {
      return `${err.stdout}${err.stderr}`;
    }
  })();
  assert.equal(output, '');
});

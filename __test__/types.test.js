'use strict';

// index.d.ts accepts the upstream usage and our additions, and the other
// APIs' entries theirs, and they reject wrong shapes (the @ts-expect-error
// lines in types/).

const assert = require('assert/strict');
const { execFileSync } = require('child_process');
const path = require('path');
const { it } = require('node:test');

const { ROOT } = require('./helpers');

it('the declarations type-check the documented usage', { timeout: 120000 }, () => {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const output = (() => {
    try {
      return execFileSync(process.execPath, [tsc, '--noEmit', '--strict', '--types', 'node', path.join(__dirname, 'types', 'usage.ts'),
        path.join(__dirname, 'types', 'compat.ts')], {
        cwd: ROOT, encoding: 'utf8',
      });
    } catch (err) {
      return `${err.stdout}${err.stderr}`;
    }
  })();
  assert.equal(output, '');
});

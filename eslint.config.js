'use strict';

// The JavaScript lint gate, run by `.ci/run` (`npm run lint`).
const js = require('@eslint/js');
const globals = require('globals');

module.exports = [
  {
    // The seeds' examples are kept verbatim, as their users wrote them.
    ignores: ['native.js', 'target/**', 'node_modules/**', 'examples/seed/**', '__test__/fixtures/compat/seed-*/**'],
  },
  js.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'commonjs',
      globals: { ...globals.node },
    },
    rules: {
      strict: ['error', 'global'],
      'no-unused-vars': ['error', { args: 'after-used', argsIgnorePattern: '^_', caughtErrors: 'none' }],
      'prefer-const': 'error',
      'no-var': 'error',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // The status page's script runs in the browser.
    files: ['crates/edgefc-core/src/runtime/observe/page.js'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    // Functions the status page test evaluates in Chromium.
    files: ['__test__/observe.test.js'],
    languageOptions: { globals: { ...globals.node, document: 'readonly', window: 'readonly', getComputedStyle: 'readonly' } },
  },
];

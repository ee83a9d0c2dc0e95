'use strict';

// The JavaScript lint gate, run by `.ci/run` (`npm run lint`).
const js = require('@eslint/js');
const globals = require('globals');

module.exports = [
  {
    // The seed example is kept verbatim, as its users wrote it.
    ignores: ['native.js', 'target/**', 'node_modules/**', 'examples/seed/**'],
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
];

'use strict';
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const globals = {
  require: 'readonly',
  module: 'writable',
  process: 'readonly',
  __dirname: 'readonly',
  console: 'readonly',
  Buffer: 'readonly',
  setTimeout: 'readonly',
  clearTimeout: 'readonly',
  setInterval: 'readonly',
  clearInterval: 'readonly',
  setImmediate: 'readonly',
  clearImmediate: 'readonly',
  URL: 'readonly',
  exports: 'writable',
  global: 'readonly',
  queueMicrotask: 'readonly',
  TextEncoder: 'readonly',
  TextDecoder: 'readonly',
  AbortController: 'readonly',
  structuredClone: 'readonly',
  performance: 'readonly',
};
module.exports = tseslint.config(
  { ignores: ['node_modules/', 'nodes/**/*.js', 'resources/', 'test-output/', '.node-red-data/', '.hub-data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Node-RED node constructors keep `this` as `node` for their callbacks: the idiom of every core node.
    files: ['src/iothub-*.ts'],
    rules: { '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['node'] }] },
  },
  {
    // page.waitForFunction bodies run in the browser.
    files: ['test/e2e/**/*.js'],
    languageOptions: { globals: { document: 'readonly', window: 'readonly' } },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
);

'use strict';
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const globals = {
  require: 'readonly', module: 'writable', process: 'readonly', __dirname: 'readonly', console: 'readonly',
  Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly',
  clearInterval: 'readonly', setImmediate: 'readonly', clearImmediate: 'readonly', URL: 'readonly',
  exports: 'writable', global: 'readonly', queueMicrotask: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly',
  AbortController: 'readonly', structuredClone: 'readonly', performance: 'readonly',
};
module.exports = tseslint.config(
  { ignores: ['node_modules/', 'nodes/**/*.js', 'test-output/', '.node-red-data/', '.hub-data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
);

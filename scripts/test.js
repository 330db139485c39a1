'use strict';
// Runs every test file under test/ with Node's own test runner, one file at a time
// (tests open real sockets and local hubs; serial keeps a 2-core CI machine honest).
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const testDir = path.join(__dirname, '..', 'test');
const files = [];
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.test.js')) files.push(path.relative(process.cwd(), p));
  }
})(testDir);
// One CA for every local hub the tests start, so the official SDKs (whose service client has no CA
// option) trust them through NODE_EXTRA_CA_CERTS, which Node reads only at process start.
const caDir = path.join(__dirname, '..', 'test-output', 'ca');
require('../nodes/localhub/tls.js').ensureTlsMaterial(caDir, []);
process.env.NODE_EXTRA_CA_CERTS = path.join(caDir, 'ca.pem');
process.env.IOTHUB_TEST_CA_DIR = caDir;

const only = process.argv.slice(2);
const selected = only.length ? files.filter((f) => only.some((o) => f.includes(o))) : files;
// A hung test fails after 3 minutes instead of stalling CI.
const handleCheck = path.join(__dirname, '..', 'test', 'support', 'handle-check.js');
const r = spawnSync(
  process.execPath,
  [
    '--enable-source-maps',
    '--require',
    handleCheck,
    '--test',
    '--test-concurrency=1',
    '--test-timeout=180000',
    ...selected.sort(),
  ],
  { stdio: 'inherit' },
);
process.exit(r.status === null ? 1 : r.status);

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
// TEST_SKIP=a,b leaves out the files whose path holds one of those strings (CI's second runtime skips hub-only files).
const skip = (process.env.TEST_SKIP ?? '').split(',').filter(Boolean);
const selected = (only.length ? files.filter((f) => only.some((o) => f.includes(o))) : files)
  .filter((f) => !skip.some((s) => f.includes(s)))
  .sort();
const handleCheck = path.join(__dirname, '..', 'test', 'support', 'handle-check.js');
// One file per process, one after the other, each timed: the summary says where the suite's minutes go.
const results = [];
for (const file of selected) {
  const started = Date.now();
  const r = spawnSync(
    process.execPath,
    // A hung test fails after 3 minutes instead of stalling CI (a test may ask for more).
    ['--enable-source-maps', '--require', handleCheck, '--test', '--test-timeout=180000', file],
    { stdio: 'inherit' },
  );
  results.push({ file, ok: r.status === 0, s: (Date.now() - started) / 1000 });
}
const failed = results.filter((r) => !r.ok);
const total = results.reduce((t, r) => t + r.s, 0);
console.log(`\n# ${results.length} files in ${total.toFixed(0)} s, slowest first:`);
for (const r of [...results].sort((a, b) => b.s - a.s)) console.log(`#   ${r.s.toFixed(1)} s  ${r.file}`);
if (skip.length) console.log(`# skipped files matching: ${skip.join(', ')}`);
console.log(
  failed.length ? `# FAILED files:\n${failed.map((r) => `#   ${r.file}`).join('\n')}` : '# every file passed',
);
process.exit(failed.length ? 1 : 0);

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
const only = process.argv.slice(2);
const selected = only.length ? files.filter((f) => only.some((o) => f.includes(o))) : files;
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...selected.sort()], { stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);

'use strict';
// Compiles src/ into nodes/ and copies the icons beside the node files,
// the only place Node-RED looks for them.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });
const iconsOut = path.join(root, 'nodes', 'icons');
fs.mkdirSync(iconsOut, { recursive: true });
for (const f of fs.readdirSync(path.join(root, 'icons'))) {
  fs.copyFileSync(path.join(root, 'icons', f), path.join(iconsOut, f));
}
const cli = path.join(root, 'nodes', 'localhub', 'cli.js');
if (fs.existsSync(cli)) fs.chmodSync(cli, 0o755);

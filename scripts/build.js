'use strict';
// Compiles src/ into nodes/ and copies the icons beside the node files,
// the only place Node-RED looks for them. Also the `prepare` script: npm runs it on `npm ci` / `npm install`
// in this repository, before `npm pack` / `npm publish`, and on installs from git (after installing
// devDependencies), so a packed or git-installed package always carries compiled nodes.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const nodesDir = path.join(root, 'nodes');

let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
} catch {
  process.stderr.write(
    'build: TypeScript is not installed. Install the devDependencies (`npm ci`, not `npm ci --omit=dev`) to build,\n' +
      'or install the published package (`npm install @iothub-c2d/node-red`), which carries the compiled nodes.\n',
  );
  process.exit(1);
}

// Compiled files are all gitignored (nodes/**/*.js, nodes/icons/); the .html and locales are hand-written.
// Removing the old output first keeps a deleted or renamed source file from living on in a package.
(function removeCompiled(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === 'locales') continue;
      removeCompiled(p);
      if (fs.readdirSync(p).length === 0) fs.rmdirSync(p);
    } else if (/\.(js|js\.map|d\.ts)$/.test(e.name) || path.basename(dir) === 'icons') {
      fs.rmSync(p);
    }
  }
})(nodesDir);

execFileSync(process.execPath, [tsc, '-p', root], { stdio: 'inherit' });
const iconsOut = path.join(nodesDir, 'icons');
fs.mkdirSync(iconsOut, { recursive: true });
for (const f of fs.readdirSync(path.join(root, 'icons'))) {
  fs.copyFileSync(path.join(root, 'icons', f), path.join(iconsOut, f));
}
// The sidebar's chart library (uPlot, MIT), served by Node-RED from resources/ at resources/<module>/...: copied from
// node_modules so the package carries no second copy in git.
const resources = path.join(root, 'resources');
fs.mkdirSync(resources, { recursive: true });
let uplot;
try {
  uplot = path.dirname(require.resolve('uplot/package.json', { paths: [root] }));
} catch {
  process.stderr.write('build: uplot is not installed; install the devDependencies (`npm ci`) to build the sidebar.\n');
  process.exit(1);
}
for (const [from, to] of [
  ['dist/uPlot.iife.min.js', 'uPlot.iife.min.js'],
  ['dist/uPlot.min.css', 'uPlot.min.css'],
  ['LICENSE', 'uPlot.LICENSE'],
]) {
  fs.copyFileSync(path.join(uplot, from), path.join(resources, to));
}
const cli = path.join(nodesDir, 'localhub', 'cli.js');
if (fs.existsSync(cli)) fs.chmodSync(cli, 0o755);

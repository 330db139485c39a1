'use strict';
// The flow library's scorecard (node-red-dev validate) checks that can run offline: P01-P07, N02, D01,
// plus the layout facts Node-RED relies on (html and icons beside the .js, locales, examples).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..', '..');
const pkg = require(path.join(root, 'package.json'));
const nodeRedPkg = require(require.resolve('node-red/package.json'));
const nodes = pkg['node-red'].nodes;

function satisfiesMin(range, version) {
  // Ranges used here are ">=X.Y.Z" only; anything else must be checked by hand.
  const m = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
  assert.ok(m, `unsupported range form "${range}"`);
  const want = [Number(m[1]), Number(m[2] || 0), Number(m[3] || 0)];
  const have = version.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (have[i] !== want[i]) return have[i] > want[i];
  return true;
}

test('P01 license, P03 repository and bugs, P04 scoped name, P05 keyword', () => {
  assert.equal(pkg.license, 'MIT');
  assert.ok(fs.existsSync(path.join(root, 'LICENSE')));
  assert.match(pkg.repository.url, /^git\+https:\/\//);
  assert.match(pkg.bugs.url, /^https:\/\//);
  assert.match(pkg.name, /^@[a-z0-9-]+\/[a-z0-9-]+$/);
  assert.ok(pkg.keywords.includes('node-red'));
});

test('P06 node-red.version admits the current releases (4.x and 5.x)', () => {
  assert.equal(pkg['node-red'].version, '>=4.0.0');
  for (const v of ['4.1.8', '5.0.7', nodeRedPkg.version]) assert.ok(satisfiesMin(pkg['node-red'].version, v), v);
});

test("P07 engines.node is compatible with Node-RED's own", () => {
  assert.ok(satisfiesMin(pkg.engines.node, '20.0.0'));
  // Every Node version Node-RED 4 accepts (>=18.5) that is also >=20 is accepted by ours: ours must not be stricter than 20.
  assert.ok(!satisfiesMin(pkg.engines.node, '19.9.9'), 'Node 18 is out of support; Node 20 is our floor');
});

test('D01 at most 6 runtime dependencies; Node-RED and the SDKs are dev only', () => {
  const deps = Object.keys(pkg.dependencies || {});
  assert.ok(deps.length <= 6, deps.join(', '));
  for (const dev of ['node-red', 'node-red-node-test-helper', 'azure-iothub', 'azure-iot-device', 'typescript']) {
    assert.ok(!deps.includes(dev), `${dev} must be a devDependency`);
    assert.ok(pkg.devDependencies[dev], `${dev} missing from devDependencies`);
  }
});

test('every node file has its .html beside it, a registerType with a literal type, a catalog and help', () => {
  for (const [type, file] of Object.entries(nodes)) {
    const js = path.join(root, file);
    assert.ok(fs.existsSync(js), `${file} is built`);
    const html = fs.readFileSync(js.replace(/\.js$/, '.html'), 'utf8');
    assert.match(html, new RegExp(`RED\\.nodes\\.registerType\\('${type}',\\s*\\{`));
    const base = path.basename(file, '.js');
    const catalog = JSON.parse(fs.readFileSync(path.join(root, 'nodes', 'locales', 'en-US', `${base}.json`), 'utf8'));
    assert.ok(catalog[type], `catalog for ${type}`);
    const help = fs.readFileSync(path.join(root, 'nodes', 'locales', 'en-US', `${base}.html`), 'utf8');
    assert.match(help, new RegExp(`data-help-name="${type}"`));
    if (type !== 'iothub-connection') {
      for (const section of ['<h3>Outputs</h3>', '<h3>Details</h3>'])
        assert.ok(help.includes(section), `${type} help has ${section}`);
    }
    // Every data-i18n key used in the edit dialog exists in the catalog.
    for (const m of html.matchAll(/data-i18n="(?:\[[a-z]+\])?([\w-]+)\.([\w.]+)"/g)) {
      const [, ns, key] = m;
      assert.equal(ns, type, `key ${m[1]}.${key} in ${type}.html`);
      const v = key.split('.').reduce((o, k) => (o ? o[k] : undefined), catalog[ns]);
      assert.equal(typeof v, 'string', `${ns}.${key} missing from ${base}.json`);
    }
  }
});

test('icons named by the nodes exist beside the node files, white on transparent', () => {
  for (const file of Object.values(nodes)) {
    const html = fs.readFileSync(path.join(root, file.replace(/\.js$/, '.html')), 'utf8');
    const icon = /icon:\s*"([^"]+\.svg)"/.exec(html);
    if (!icon) continue;
    const svg = fs.readFileSync(path.join(root, 'nodes', 'icons', icon[1]), 'utf8');
    assert.match(svg, /^<svg/);
    const colours = [...svg.matchAll(/(?:fill|stroke)="([^"]+)"/g)].map((m) => m[1]);
    assert.ok(
      colours.every((c) => c === '#fff' || c === 'none'),
      `${icon[1]} uses only white: ${colours}`,
    );
  }
});

test('N02 every non-config node appears in an example; examples are valid flows', () => {
  const dir = path.join(root, 'examples');
  const seen = new Set();
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    const flow = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    assert.ok(Array.isArray(flow) && flow.length > 0, f);
    const ids = new Set(flow.map((n) => n.id));
    assert.equal(ids.size, flow.length, `${f}: ids are unique`);
    assert.ok(
      flow.some((n) => n.type === 'comment'),
      `${f} has a comment saying what it shows`,
    );
    for (const n of flow) {
      seen.add(n.type);
      for (const out of n.wires || [])
        for (const id of out) assert.ok(ids.has(id), `${f}: ${n.id} wires to a missing ${id}`);
      if (n.connection) assert.ok(ids.has(n.connection), `${f}: ${n.id} needs its config node`);
      // No secret in an example.
      assert.ok(!/SharedAccessKey=|sig=/.test(JSON.stringify(n)), `${f}: ${n.id} holds no key`);
    }
  }
  for (const type of Object.keys(nodes).filter((t) => t !== 'iothub-connection'))
    assert.ok(seen.has(type), `${type} in an example`);
});

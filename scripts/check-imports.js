'use strict';
// Part of `npm run lint`: the import graph of src/ has no cycle, only the two MQTT transports load `mqtt` (the device's
// to IoT Hub, and DPS registration, which speaks other topics to another service), and the back end's client does not
// load a device transport. Type-only imports are left out: TypeScript erases them.
const fs = require('node:fs');
const path = require('node:path');

const src = path.join(__dirname, '..', 'src');
const files = [];
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) files.push(p);
  }
})(src);

const rel = (f) => path.relative(src, f);
const graph = new Map();
const packages = new Map();
for (const f of files) {
  const text = fs.readFileSync(f, 'utf8');
  const deps = [];
  const pkgs = [];
  // `import x from '...'`, `import '...'`, `export ... from '...'`, `require('...')`; not `import type`.
  const re =
    /^\s*(?:import(?!\s+type\b)[^'"]*?from\s*|import\s*|export\s+(?!type\b)[^'"]*?from\s*)['"]([^'"]+)['"]|require\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (let m; (m = re.exec(text));) {
    const spec = m[1] ?? m[2];
    if (spec.startsWith('.')) {
      const target = path.resolve(path.dirname(f), spec) + '.ts';
      if (fs.existsSync(target)) deps.push(target);
    } else pkgs.push(spec);
  }
  graph.set(f, deps);
  packages.set(f, pkgs);
}

const problems = [];
// Cycles: depth-first search, reporting each cycle's path once.
const state = new Map();
const stack = [];
function visit(f) {
  state.set(f, 'open');
  stack.push(f);
  for (const d of graph.get(f) ?? []) {
    if (state.get(d) === 'open')
      problems.push(`import cycle: ${[...stack.slice(stack.indexOf(d)), d].map(rel).join(' -> ')}`);
    else if (!state.has(d)) visit(d);
  }
  stack.pop();
  state.set(f, 'done');
}
for (const f of files) if (!state.has(f)) visit(f);

const mqttTransports = [path.join(src, 'core', 'mqtt-device.ts'), path.join(src, 'core', 'dps-mqtt.ts')];
for (const [f, pkgs] of packages) {
  if (pkgs.some((p) => p === 'mqtt' || p.startsWith('mqtt/')) && !mqttTransports.includes(f))
    problems.push(`${rel(f)} loads mqtt: only core/mqtt-device.ts and core/dps-mqtt.ts may`);
}
function closure(f, seen = new Set()) {
  for (const d of graph.get(f) ?? [])
    if (!seen.has(d)) {
      seen.add(d);
      closure(d, seen);
    }
  return seen;
}
const serviceLoads = closure(path.join(src, 'core', 'service-client.ts'));
for (const t of ['mqtt-device.ts', 'amqp-device.ts', 'device-client.ts', 'dps-mqtt.ts', 'dps-client.ts']) {
  if (serviceLoads.has(path.join(src, 'core', t)))
    problems.push(`core/service-client.ts loads core/${t}: the back end needs no device transport`);
}

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(
  `imports: ${files.length} files, no cycle; only core/mqtt-device.ts and core/dps-mqtt.ts load mqtt; the service client loads no device transport`,
);

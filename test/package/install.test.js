'use strict';
// The package as users install it: `npm pack` from the sources alone (no build run before: the pack must build
// itself), the tarball's file list, `npm install <tarball>` into a fresh Node-RED user directory (as the palette
// manager does), a Node-RED runtime on that directory (the one the suite runs under: NODE_RED_PATH), its admin API,
// a flow on the built-in local hub, and the installed command line.
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');
const { startNodeRed } = require('../../scripts/node-red-runtime');
const { adminRequest } = require('../support/runtime');
const { cliArgs, checkJsonLine } = require('../support/hub-cli');

const root = path.join(__dirname, '..', '..');
const pkg = require(path.join(root, 'package.json'));
const NODE_TYPES = ['iothub-connection', 'iothub-device-receive', 'iothub-c2d-send', 'iothub-c2d-feedback'];
// npm and the installed command line run on the same Node as this test (CI runs the suite on Node 22).
const env = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}` };
const NPM_QUIET = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-install-'));
const state = {};

function npm(args, cwd) {
  return execFileSync('npm', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 150_000 });
}

function waitFor(predicate, what, timeoutMs = 30_000) {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const tick = async () => {
      let v;
      try {
        v = await predicate();
      } catch {
        v = undefined;
      }
      if (v) return resolve(v);
      if (Date.now() - started > timeoutMs)
        return reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      setTimeout(tick, 50);
    };
    tick();
  });
}

async function getJson(urlPath) {
  const res = await adminRequestAccept(urlPath);
  assert.equal(res.status, 200, `GET ${urlPath}: ${res.status}`);
  return JSON.parse(res.text);
}

function adminRequestAccept(urlPath) {
  return new Promise((resolve, reject) => {
    const req = require('node:http').get(
      { host: '127.0.0.1', port: state.red.port, path: urlPath, headers: { accept: 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode, text }));
      },
    );
    req.on('error', reject);
  });
}

function refused(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

test.before(() => {
  // A clean checkout: the files git knows (tracked, or new and not ignored) as they are in the working tree,
  // so nothing built or generated (nodes/**/*.js, nodes/icons, test-output, .node-red-data) comes along.
  const src = path.join(tmp, 'src');
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: root,
    encoding: 'utf8',
  });
  for (const f of listed.split('\0').filter(Boolean)) {
    if (!fs.existsSync(path.join(root, f))) continue; // deleted in the working tree
    fs.mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
    fs.copyFileSync(path.join(root, f), path.join(src, f));
  }
  assert.ok(!fs.existsSync(path.join(src, 'nodes', 'iothub-connection.js')), 'the copy holds no build output');
  // The devDependencies (TypeScript) a clone has after `npm ci`.
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(src, 'node_modules'), 'dir');
  const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', tmp], src));
  state.packed = packed;
  state.tarball = path.join(tmp, packed.filename);

  // A fresh user directory as Node-RED creates it, then what the palette manager runs in it.
  state.userDir = path.join(tmp, 'user');
  fs.mkdirSync(state.userDir);
  fs.writeFileSync(
    path.join(state.userDir, 'package.json'),
    JSON.stringify(
      { name: 'node-red-project', description: 'A Node-RED Project', version: '0.0.1', private: true },
      null,
      2,
    ),
  );
  npm(['install', state.tarball, ...NPM_QUIET], state.userDir);
  state.installed = path.join(state.userDir, 'node_modules', '@iothub-c2d', 'node-red');
});

test.after(async () => {
  if (state.red) await state.red.stop();
  // A command a failed check left running: its whole group (npx and the command under it), or itself.
  for (const { child, detached } of state.children || []) {
    try {
      if (detached) process.kill(-child.pid, 'SIGKILL');
      else if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('the tarball holds what Node-RED and the command line load, and nothing private', () => {
  const files = state.packed.files.map((f) => f.path);
  const required = [
    'package.json',
    'README.md',
    'LICENSE',
    'CHANGELOG.md',
    ...Object.values(pkg['node-red'].nodes),
    ...Object.values(pkg['node-red'].nodes).map((f) => f.replace(/\.js$/, '.html')),
    // The sidebar plugin: its .js and the editor .html beside it.
    ...Object.values(pkg['node-red'].plugins),
    ...Object.values(pkg['node-red'].plugins).map((f) => f.replace(/\.js$/, '.html')),
    pkg.main,
    pkg.bin['iothub-local-hub'],
  ];
  for (const dir of ['src/core', 'src/localhub']) {
    for (const f of fs.readdirSync(path.join(root, dir)).filter((f) => f.endsWith('.ts')))
      required.push(`nodes/${dir.slice(4)}/${f.replace(/\.ts$/, '.js')}`);
  }
  for (const f of fs.readdirSync(path.join(root, 'src')).filter((f) => f.endsWith('.ts')))
    required.push(`nodes/${f.replace(/\.ts$/, '.js')}`);
  for (const f of fs.readdirSync(path.join(root, 'icons'))) required.push(`nodes/icons/${f}`);
  // The chart library the build copies for the sidebar (served at resources/<module>/...).
  for (const f of ['uPlot.iife.min.js', 'uPlot.min.css', 'uPlot.LICENSE']) required.push(`resources/${f}`);
  for (const f of fs.readdirSync(path.join(root, 'nodes', 'locales', 'en-US')))
    required.push(`nodes/locales/en-US/${f}`);
  for (const f of fs.readdirSync(path.join(root, 'examples')).filter((f) => f.endsWith('.json')))
    required.push(`examples/${f}`);
  // Every compiled file ships its source map, which carries its TypeScript inline: stack traces name src/ lines.
  required.push(...required.filter((f) => f.startsWith('nodes/') && f.endsWith('.js')).map((f) => `${f}.map`));
  const missing = required.filter((f) => !files.includes(f));
  assert.deepEqual(missing, [], 'missing from the tarball');

  const privatePath =
    /^(src|test|test-output|bench|docs|scripts|\.ci|icons)\/|(^|\/)\.node-red-data\/|(^|\/)\.hub-data\/|\.(pem|key|crt|ts|tgz|log)$|(^|\/)\.|node_modules\//;
  assert.deepEqual(
    files.filter((f) => privatePath.test(f)),
    [],
    'private files in the tarball',
  );
  // Every file is one of the kinds listed above: nothing else slips in.
  assert.deepEqual(
    files.filter((f) => !required.includes(f)),
    [],
    'unexpected files in the tarball',
  );
  // No source map points nowhere: each .js names a map in the package, and each map holds every source it names.
  // (resources/ holds a third-party minified library as published, without a map.)
  for (const f of files.filter((f) => f.endsWith('.js') && !f.startsWith('resources/'))) {
    const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(fs.readFileSync(path.join(state.installed, f), 'utf8'))?.[1];
    assert.ok(
      url && files.includes(path.posix.join(path.posix.dirname(f), url)),
      `${f} names a map in the package (${url})`,
    );
    const map = JSON.parse(fs.readFileSync(path.join(state.installed, `${f}.map`), 'utf8'));
    assert.ok(
      map.sources.length > 0 &&
        map.sourcesContent?.length === map.sources.length &&
        map.sourcesContent.every((c) => typeof c === 'string' && c.length > 0),
      `${f}.map carries its sources`,
    );
  }
  // A guard against something large slipping in (a dependency, test output), not a budget: the source maps carry their
  // TypeScript (about a third of the size) and resources/ the sidebar's chart library (uPlot, about 50 KB).
  assert.ok(state.packed.size < 500_000, `tarball is ${state.packed.size} bytes`);
});

test('npm install put a copy (not a link) of the package in the user directory, with its command', () => {
  assert.ok(!fs.lstatSync(state.installed).isSymbolicLink());
  assert.equal(require(path.join(state.installed, 'package.json')).version, pkg.version);
  const bin = path.join(state.userDir, 'node_modules', '.bin', 'iothub-local-hub');
  assert.ok(fs.existsSync(bin), 'node_modules/.bin/iothub-local-hub');
  fs.accessSync(bin, fs.constants.X_OK);
  for (const dep of Object.keys(pkg.dependencies))
    assert.ok(fs.existsSync(path.join(state.userDir, 'node_modules', dep, 'package.json')), `${dep} installed`);
});

test('Node-RED loads the installed nodes, icons and examples', async (t) => {
  state.red = await startNodeRed({
    userDir: state.userDir,
    port: 0,
    logLevel: 'warn',
    credentialSecret: 'install-test',
  });
  // The runtime is the one the suite runs under (CI: Node-RED 5 on Node 22 through NODE_RED_PATH).
  const redPath = process.env.NODE_RED_PATH || require.resolve('node-red');
  const redVersion = require(require.resolve('node-red/package.json', { paths: [path.dirname(redPath)] })).version;
  // Node-RED 4 reports "4.1.8-git" when its runtime package sits beside a development tree: compare the release.
  const running = (await getJson('/settings')).version;
  assert.equal(running.replace(/-git$/, ''), redVersion);
  t.diagnostic(`Node-RED ${redVersion} on Node ${process.version}`);

  const sets = (await getJson('/nodes')).filter((s) => s.module === pkg.name);
  assert.deepEqual(sets.flatMap((s) => s.types).sort(), [...NODE_TYPES].sort());
  for (const s of sets) {
    assert.equal(s.err, undefined, `${s.id}: ${s.err}`);
    assert.equal(s.enabled, true, s.id);
    assert.equal(s.version, pkg.version, s.id);
  }
  // The editor's node definitions (html) for our module, as the palette loads them.
  const html = await adminRequestAccept(`/nodes/${pkg.name}`);
  assert.equal(html.status, 200);
  // Plugins, where the runtime has the endpoint: none of ours, none failed.
  const plugins = await adminRequestAccept('/plugins');
  if (plugins.status === 200) {
    for (const p of JSON.parse(plugins.text)) assert.equal(p.err, undefined, `${p.id}: ${p.err}`);
  }

  const icons = await getJson('/icons');
  assert.deepEqual([...(icons[pkg.name] || [])].sort(), fs.readdirSync(path.join(root, 'icons')).sort());
  for (const icon of icons[pkg.name]) {
    const res = await adminRequestAccept(`/icons/${pkg.name}/${icon}`);
    assert.equal(res.text, fs.readFileSync(path.join(root, 'icons', icon), 'utf8'), `${icon} served as packed`);
  }

  // Import ▸ Examples ▸ @iothub-c2d/node-red: the library named examples.
  const modules = await getJson('/library/examples/flows/');
  assert.ok(modules.includes(pkg.name), `examples of ${pkg.name} listed (${modules})`);
  const listing = await getJson(`/library/examples/flows/${pkg.name}`);
  const names = listing.map((e) => (typeof e === 'string' ? e : e.fn)).sort();
  const want = fs
    .readdirSync(path.join(root, 'examples'))
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.replace(/\.json$/, ''))
    .sort();
  assert.deepEqual(names, want);
  const tutorial = await getJson(`/library/examples/flows/${pkg.name}/${encodeURIComponent(want[0])}`);
  assert.ok(
    Array.isArray(tutorial) && tutorial.some((n) => n.type === 'iothub-c2d-send'),
    'an example flow can be fetched',
  );
});

test('a flow on the built-in local hub carries a message from c2d send to device receive, and its feedback', async () => {
  assert.ok(state.red, 'Node-RED is running');
  const debug = [];
  const ws = new WebSocket(`ws://127.0.0.1:${state.red.port}/comms`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.on('message', (data) => {
    for (const m of [].concat(JSON.parse(String(data)))) if (m.topic === 'debug') debug.push(m.data);
  });
  ws.send(JSON.stringify({ subscribe: 'debug' }));
  try {
    const at = (n) => ({ z: 'tab', x: 100, y: 100, wires: [], ...n });
    const dbg = (id) =>
      at({
        id,
        type: 'debug',
        name: id,
        active: true,
        tosidebar: true,
        console: false,
        complete: 'true',
        targetType: 'full',
      });
    const flow = [
      { id: 'tab', type: 'tab', label: 'install test' },
      {
        id: 'cfg',
        type: 'iothub-connection',
        name: 'local hub',
        mode: 'local',
        deviceTransport: 'mqtt',
        serviceTransport: 'amqp',
        tokenLifetime: 3600,
        keepAlive: 180,
        localHub: { mqttsPort: 0, amqpsPort: 0, httpsPort: 0, dataDir: '' },
      },
      at({
        id: 'inj',
        type: 'inject',
        props: [{ p: 'payload' }],
        payload: 'hello from the installed package',
        payloadType: 'str',
        repeat: '',
        once: false,
        wires: [['send']],
      }),
      at({
        id: 'send',
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: 'install-dev',
        deviceIdType: 'str',
        ack: 'full',
        ttl: '',
        mappings: [{ name: 'messageId', value: 'install-1', type: 'str' }],
        trackDelivery: false,
        trackTimeout: 60,
        outputs: 0,
      }),
      at({
        id: 'recv',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: 'install-dev',
        output: 'string',
        settle: 'auto',
        wires: [['gotMessage']],
      }),
      at({ id: 'fb', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [['gotFeedback']] }),
      dbg('gotMessage'),
      dbg('gotFeedback'),
    ];
    const deployed = await adminRequest(state.red.port, 'POST', '/flows', flow);
    assert.equal(deployed.status, 204, deployed.text);
    // The inject button's endpoint: the message waits in the hub's queue if the device is not connected yet.
    // A full deploy answers before every node has started: wait for the inject node to take the press.
    await waitFor(
      async () => (await adminRequest(state.red.port, 'POST', '/inject/inj')).status === 200,
      'the inject node to start',
    );

    const received = await waitFor(() => debug.find((d) => d.id === 'gotMessage'), 'the device to receive the message');
    const msg = JSON.parse(received.msg);
    assert.equal(msg.payload, 'hello from the installed package');
    assert.equal(msg.deviceId, 'install-dev');
    assert.equal(msg.messageId, 'install-1');
    const feedback = await waitFor(() => debug.find((d) => d.id === 'gotFeedback'), "the hub's delivery feedback");
    const record = JSON.parse(feedback.msg);
    assert.equal(record.originalMessageId, 'install-1');
    assert.equal(record.deviceId, 'install-dev');
    assert.equal(record.statusCode, 'Success');
    // The local hub kept its data in the user directory, as the README says.
    assert.ok(fs.existsSync(path.join(state.userDir, 'iothub-local-hub')));
  } finally {
    ws.close();
  }
});

function startCli(command, args, detached) {
  const child = spawn(command, args, { cwd: state.userDir, env, detached, stdio: ['ignore', 'pipe', 'pipe'] });
  (state.children ||= []).push({ child, detached });
  let out = '';
  let err = '';
  child.stderr.on('data', (c) => {
    err += c;
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out, err })));
  const firstLine = new Promise((resolve, reject) => {
    child.stdout.on('data', (c) => {
      out += c;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    exited.then((e) =>
      reject(new Error(`exited (${e.code ?? e.signal}) before printing; stderr: ${e.err.slice(0, 500)}`)),
    );
  });
  firstLine.catch(() => undefined);
  return { child, firstLine, exited };
}

test('npx iothub-local-hub --json prints its line, and SIGTERM stops it', async () => {
  const args = (dir) => cliArgs(path.join(tmp, dir));

  // The installed command itself (the bin link, its #! line and mode): SIGTERM exits 0.
  const direct = startCli(
    path.join(state.userDir, 'node_modules', '.bin', 'iothub-local-hub'),
    args('cli-direct'),
    false,
  );
  const directInfo = checkJsonLine(await direct.firstLine);
  direct.child.kill('SIGTERM');
  const directEnd = await direct.exited;
  assert.equal(directEnd.code, 0, `exit ${directEnd.code ?? directEnd.signal}`);
  assert.equal(directEnd.out.trim().split('\n').length, 1, 'exactly one line on stdout');
  assert.ok(await refused(directInfo.ports.mqtts), 'its MQTT port is closed');

  // Through npx, as the README shows. `--no --` never fetches a package of that name from the registry.
  // npm does not pass a SIGTERM sent to npx alone on to the command, so the signal goes to the process
  // group, as a terminal or service manager sends it.
  const viaNpx = startCli('npx', ['--no', '--', 'iothub-local-hub', ...args('cli-npx')], true);
  const npxInfo = checkJsonLine(await viaNpx.firstLine);
  process.kill(-viaNpx.child.pid, 'SIGTERM');
  await viaNpx.exited;
  await waitFor(
    async () => (await refused(npxInfo.ports.mqtts)) && (await refused(npxInfo.ports.amqps)),
    'the hub started by npx to close its ports',
    15_000,
  );
});

'use strict';
// The Device Provisioning Service kind of config node, in a real Node-RED against the local hub's DPS: registration
// with an individual and a group enrollment (MQTT and HTTPS) then C2D; a wrong group key retried slowly; no new
// registration on a restart; a device deleted from the hub registered again; 100 devices of one group in one node.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const https = require('node:https');
const { helper, nodeModules, startHub, waitFor, root } = require('../support/flows');
const { registerDevice } = require('../../nodes/core/dps-client.js');
const { deriveDeviceKey } = require('../../nodes/core/dps-key.js');

const GROUP_KEY = Buffer.alloc(32, 7).toString('base64');
const WRONG_KEY = Buffer.alloc(32, 9).toString('base64');
const SOLO_KEY = Buffer.alloc(32, 3).toString('base64');
const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });

function userDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-dps-nr-'));
}

function dpsHub(extra = {}) {
  return startHub({
    autoRegister: false,
    ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0, dps: 0 },
    enrollmentGroups: [{ groupId: 'fleet', primaryKey: GROUP_KEY }],
    enrollments: [{ registrationId: 'solo', primaryKey: SOLO_KEY }],
    ...extra,
  });
}

/** A DPS config node pointed at the hub's DPS the way a user points one at Azure: endpoint, scope, key, CA. */
function dpsConfig(hub, id, { key = GROUP_KEY, attestation = 'group', transport = 'mqtt' } = {}) {
  return {
    node: {
      id,
      type: 'iothub-connection',
      name: `DPS ${attestation}`,
      mode: 'dps',
      dpsEndpoint: hub.provisioningHost,
      dpsIdScope: hub.idScope,
      dpsAttestation: attestation,
      dpsTransport: transport,
      deviceTransport: 'mqtt',
      serviceTransport: 'amqp',
      tokenLifetime: 3600,
    },
    credentials: { dpsKey: key, ca: hub.caPem },
  };
}

/** c2d send on a hub policy config (`svc`), a Catch into `caught`, plus the given DPS configs and receive nodes. */
function flowWith(hub, configs, receivers) {
  const credentials = { svc: { connectionString: hub.hubConnectionString, ca: hub.caPem } };
  for (const c of configs) credentials[c.node.id] = c.credentials;
  return {
    credentials,
    flow: [
      { id: 'tab', type: 'tab' },
      ...configs.map((c) => c.node),
      {
        id: 'svc',
        type: 'iothub-connection',
        mode: 'azure',
        deviceTransport: 'mqtt',
        serviceTransport: 'amqp',
        amqpPort: hub.ports.amqps,
      },
      ...receivers.map((r) =>
        at({ type: 'iothub-device-receive', output: 'string', settle: 'auto', wires: [['out']], ...r }),
      ),
      at({
        id: 'send',
        type: 'iothub-c2d-send',
        connection: 'svc',
        deviceId: '',
        deviceIdType: 'str',
        ack: 'none',
        ttl: '',
        trackDelivery: false,
        mappings: [],
        wires: [],
      }),
      at({ id: 'catch', type: 'catch', scope: null, uncaught: false, wires: [['caught']] }),
      at({ id: 'out', type: 'helper' }),
      at({ id: 'caught', type: 'helper' }),
    ],
  };
}

/** Every status a node showed, and everything it logged or warned, to look for keys in. */
function watch(node) {
  const seen = { statuses: [], said: [] };
  node.on('call:status', (c) => seen.statuses.push(c.args[0]));
  node.on('call:warn', (c) => seen.said.push(String(c.args[0])));
  node.on('call:error', (c) => seen.said.push(String(c.args[0]?.message ?? c.args[0])));
  node.on('call:log', (c) => seen.said.push(String(c.args[0])));
  return seen;
}

function noKeyIn(text, keys) {
  for (const k of keys) assert.ok(!text.includes(k), 'no key, derived or not, in what the nodes showed');
}

async function c2dReaches(deviceIds, out, tag) {
  const send = helper.getNode('send');
  for (const id of deviceIds) send.receive({ payload: `${tag}:${id}`, deviceId: id });
  await waitFor(
    () => deviceIds.every((id) => out.some((m) => m.deviceId === id && m.payload === `${tag}:${id}`)),
    `C2D "${tag}" at ${deviceIds.join(', ')}`,
    20_000,
  );
}

test('the core client registers over MQTT and HTTPS, individual and group, and names a refusal', async () => {
  const hub = await dpsHub();
  try {
    const base = { endpoint: hub.provisioningHost, connectHost: '127.0.0.1', idScope: hub.idScope, ca: hub.caPem };
    for (const transport of ['mqtt', 'https']) {
      const a = await registerDevice({
        ...base,
        transport,
        registrationId: `g-${transport}`,
        symmetricKey: deriveDeviceKey(GROUP_KEY, `g-${transport}`),
      });
      assert.deepEqual(a, { assignedHub: `localhost:${hub.ports.mqtts}`, deviceId: `g-${transport}` });
      const s = await registerDevice({ ...base, transport, registrationId: 'solo', symmetricKey: SOLO_KEY });
      assert.equal(s.deviceId, 'solo');
      await assert.rejects(
        registerDevice({ ...base, transport, registrationId: 'x1', symmetricKey: deriveDeviceKey(WRONG_KEY, 'x1') }),
        (e) => e.code === 'UNAUTHORIZED' && /enrollment \(group\) key/.test(e.message),
      );
    }
    assert.equal(hub.stats().dpsRegistrations, 4);
  } finally {
    await hub.stop();
  }
});

test('throttled (429) and failing (503) answers are asked again after retry-after; a status DPS never gives is named', async () => {
  // A stand-in DPS over HTTPS: 429, then 503, then 202 assigning, then assigned; each with retry-after 1 s.
  const { ensureTlsMaterial } = require('../../nodes/localhub/tls.js');
  const material = ensureTlsMaterial(fs.mkdtempSync(path.join(os.tmpdir(), 'dps-fake-')), ['localhost']);
  const answers = [
    [429, { errorCode: 429001, message: 'throttled' }],
    [503, { errorCode: 503000, message: 'busy' }],
    [202, { operationId: 'op1', status: 'assigning' }],
    [200, { operationId: 'op1', status: 'assigned', registrationState: { assignedHub: 'h.example', deviceId: 'd1' } }],
  ];
  const asked = [];
  const server = https.createServer({ key: material.keyPem, cert: material.certPem }, (req, res) => {
    asked.push({ at: Date.now(), method: req.method, url: req.url });
    const [status, body] = answers[Math.min(asked.length - 1, answers.length - 1)];
    res.writeHead(status, { 'content-type': 'application/json', 'retry-after': '1' });
    res.end(JSON.stringify(body));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  try {
    const a = await registerDevice({
      endpoint: `localhost:${server.address().port}`,
      connectHost: '127.0.0.1',
      ca: material.caPem,
      idScope: '0ne00FAKE',
      registrationId: 'd1',
      symmetricKey: GROUP_KEY,
      transport: 'https',
    });
    assert.deepEqual(a, { assignedHub: 'h.example', deviceId: 'd1' });
    assert.deepEqual(
      asked.map((q) => `${q.method} ${q.url.split('?')[0]}`),
      [
        'PUT /0ne00FAKE/registrations/d1/register',
        'PUT /0ne00FAKE/registrations/d1/register',
        'PUT /0ne00FAKE/registrations/d1/register',
        'GET /0ne00FAKE/registrations/d1/operations/op1',
      ],
    );
    for (let i = 1; i < asked.length; i++)
      assert.ok(
        asked[i].at - asked[i - 1].at >= 900,
        `request ${i + 1} waited retry-after (${asked[i].at - asked[i - 1].at} ms)`,
      );
    answers.length = 0;
    answers.push([200, { status: 'weird' }]);
    asked.length = 0;
    await assert.rejects(
      registerDevice({
        endpoint: `localhost:${server.address().port}`,
        connectHost: '127.0.0.1',
        ca: material.caPem,
        idScope: '0ne00FAKE',
        registrationId: 'd1',
        symmetricKey: GROUP_KEY,
        transport: 'https',
      }),
      (e) => e.code === 'PROTOCOL_ERROR' && /unknown status "weird"/.test(e.message),
    );
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('a redeploy within the linger takes the provisioned device up again: no new registration, no message lost', async () => {
  const { DpsSession } = require('../../nodes/core/dps-session.js');
  const { MemoryAssignmentStore } = require('../../nodes/core/dps-assignments.js');
  const { ServiceClient } = require('../../nodes/core/service-client.js');
  const { parseConnectionString } = require('../../nodes/core/connection-string.js');
  const hub = await dpsHub();
  const session = new DpsSession({
    dps: {
      endpoint: hub.provisioningHost,
      connectHost: '127.0.0.1',
      idScope: hub.idScope,
      transport: 'mqtt',
      ca: hub.caPem,
    },
    attestation: 'group',
    enrollmentKey: GROUP_KEY,
    store: new MemoryAssignmentStore(),
    hub: { deviceTransport: 'mqtt', serviceTransport: 'amqp', ca: hub.caPem, lingerMs: 10_000 },
  });
  const c = parseConnectionString(hub.hubConnectionString);
  const service = new ServiceClient({
    hostName: c.hostName,
    ca: hub.caPem,
    transport: 'amqp',
    sharedAccessKeyName: c.sharedAccessKeyName,
    sharedAccessKey: c.sharedAccessKey,
  });
  service.open();
  const user = () => {
    const u = { states: [], got: [] };
    u.onStatus = (ev) => u.states.push(ev);
    u.onMessage = (m) => u.got.push(m.body.toString());
    return u;
  };
  try {
    const first = user();
    const lease = session.acquireDevice('linger-1', first);
    await waitFor(() => first.states.at(-1)?.state === 'connected', 'connected', 20_000);
    assert.ok(
      first.states.some((ev) => ev.provisioning && ev.state === 'connecting'),
      'said it was registering',
    );
    await lease.release(false);
    // While no node holds the device, a message waits, unacknowledged, for the next one.
    await service.send('linger-1', { body: Buffer.from('while parked'), properties: {} });
    const second = user();
    const lease2 = session.acquireDevice('linger-1', second);
    await waitFor(() => second.got.includes('while parked'), 'the parked message reaches the redeployed node', 20_000);
    assert.equal(hub.stats().dpsRegistrations, 1, 'no new registration');
    assert.deepEqual(first.got, []);
    await lease2.release(true);
    await waitFor(() => !hub.isDeviceConnected('linger-1'), 'released for good: disconnected');
  } finally {
    await service.close();
    await session.close();
    await hub.stop();
  }
});

test(
  'individual (HTTPS) and group (MQTT) enrollments: registered, C2D received; a restart registers nothing again',
  { timeout: 120_000 },
  async () => {
    const hub = await dpsHub();
    const dir = userDir();
    helper.settings({ userDir: dir });
    await helper.startServer();
    const group = dpsConfig(hub, 'dpsG');
    const solo = dpsConfig(hub, 'dpsI', { key: SOLO_KEY, attestation: 'individual', transport: 'https' });
    const { flow, credentials } = flowWith(
      hub,
      [group, solo],
      [
        { id: 'rg', connection: 'dpsG', deviceId: 'grp-1' },
        { id: 'ri', connection: 'dpsI', deviceId: 'solo' },
      ],
    );
    const keys = [GROUP_KEY, SOLO_KEY, deriveDeviceKey(GROUP_KEY, 'grp-1')];
    try {
      const started = Date.now();
      await helper.load(nodeModules, flow, credentials);
      const seen = [watch(helper.getNode('rg')), watch(helper.getNode('ri'))];
      const out = [];
      helper.getNode('out').on('input', (m) => out.push(m));
      await waitFor(() => hub.isDeviceConnected('grp-1') && hub.isDeviceConnected('solo'), 'both provisioned', 30_000);
      const firstMs = Date.now() - started;
      await c2dReaches(['grp-1', 'solo'], out, 'first');
      assert.equal(hub.stats().dpsRegistrations, 2, 'one registration per device');
      const file = path.join(dir, 'iothub-dps-assignments.json');
      // Written 100 ms after the first registration (a fleet's are written together).
      const saved = await waitFor(() => {
        const j = JSON.parse(fs.readFileSync(file, 'utf8'));
        return Object.keys(j.assignments).length === 2 && j;
      }, 'both assignments in the file');
      assert.deepEqual(Object.keys(saved.assignments).sort(), [`${hub.idScope}/grp-1`, `${hub.idScope}/solo`]);
      assert.equal(saved.assignments[`${hub.idScope}/grp-1`].assignedHub, `localhost:${hub.ports.mqtts}`);
      noKeyIn(fs.readFileSync(file, 'utf8'), keys);

      // A restart: the runtime stops every node and starts them again from the saved flow; the file says where to go.
      await helper.unload();
      const restarted = Date.now();
      await helper.load(nodeModules, flow, credentials);
      const out2 = [];
      helper.getNode('out').on('input', (m) => out2.push(m));
      seen.push(watch(helper.getNode('rg')), watch(helper.getNode('ri')));
      await c2dReaches(['grp-1', 'solo'], out2, 'after-restart');
      const againMs = Date.now() - restarted;
      assert.equal(hub.stats().dpsRegistrations, 2, 'the restart registered nothing again');
      console.log(
        `# DPS: 2 devices registered and connected in ${firstMs} ms; after a restart, C2D again in ${againMs} ms with 0 new registrations`,
      );
      noKeyIn(JSON.stringify([seen, out, out2]), keys);
      assert.ok(
        seen[0].statuses.some((s) => /provisioning|registering/i.test(s.text)),
        `the status said it was registering: ${JSON.stringify(seen[0].statuses.slice(0, 3))}`,
      );
    } finally {
      await helper.unload().catch(() => undefined);
      await helper.stopServer();
      await hub.stop();
    }
  },
);

test('a wrong group key: "unauthorized" in the status, and the next attempt comes slowly, not in a loop', async () => {
  const refusals = [];
  const hub = await dpsHub({
    log: (level, text) => {
      if (/registration \S+ refused/.test(text)) refusals.push(Date.now());
    },
  });
  helper.settings({ userDir: userDir() });
  await helper.startServer();
  const { flow, credentials } = flowWith(
    hub,
    [dpsConfig(hub, 'dpsW', { key: WRONG_KEY })],
    [{ id: 'rw', connection: 'dpsW', deviceId: 'wrong-1' }],
  );
  try {
    await helper.load(nodeModules, flow, credentials);
    const seen = watch(helper.getNode('rw'));
    await waitFor(
      () => seen.statuses.some((s) => /unauthori[sz]ed/i.test(s.text)),
      'unauthorized in the status',
      20_000,
    );
    // The retry policy waits 10 s (±50 %) after an unauthorized: wait for the second attempt, then measure the gap.
    await waitFor(() => refusals.length >= 2, 'a second attempt', 30_000);
    const gapMs = refusals[1] - refusals[0];
    const status = seen.statuses.find((s) => /unauthori[sz]ed/i.test(s.text));
    console.log(`# wrong group key: status ${JSON.stringify(status)}; second attempt after ${gapMs} ms`);
    assert.ok(gapMs >= 4500, `the second attempt waited ${gapMs} ms (at least 5 s after "unauthorized")`);
    assert.equal(refusals.length, 2, 'no attempt between the two');
    assert.equal(hub.stats().dpsRegistrations, 0);
    assert.ok(!hub.isDeviceConnected('wrong-1'));
    noKeyIn(JSON.stringify(seen), [WRONG_KEY, deriveDeviceKey(WRONG_KEY, 'wrong-1')]);
  } finally {
    await helper.unload().catch(() => undefined);
    await helper.stopServer();
    await hub.stop();
  }
});

/** DELETE /devices/{id} on the hub's REST API with its owner policy, as the portal or az iot hub device-identity delete. */
function deleteDevice(hub, deviceId) {
  const { createSasToken } = require('../../nodes/core/sas.js');
  const m = /HostName=([^;]+);SharedAccessKeyName=([^;]+);SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString);
  const token = createSasToken({
    resourceUri: m[1],
    keyName: m[2],
    key: m[3],
    expiresAt: Math.floor(Date.now() / 1000) + 600,
  });
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: hub.ports.https,
        servername: 'localhost',
        ca: hub.caPem,
        method: 'DELETE',
        path: `/devices/${encodeURIComponent(deviceId)}?api-version=2021-04-12`,
        headers: { Authorization: token, 'If-Match': '*' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test(
  'a device deleted from the hub registers again and carries on; its neighbour does not',
  { timeout: 120_000 },
  async () => {
    let hub = await dpsHub();
    const { dataDir, ports } = hub;
    helper.settings({ userDir: userDir() });
    await helper.startServer();
    const { flow, credentials } = flowWith(
      hub,
      [dpsConfig(hub, 'dpsD')],
      [{ id: 'rd', connection: 'dpsD', deviceId: 'keep-1 gone-1' }],
    );
    try {
      await helper.load(nodeModules, flow, credentials);
      const out = [];
      helper.getNode('out').on('input', (m) => out.push(m));
      await waitFor(() => hub.isDeviceConnected('keep-1') && hub.isDeviceConnected('gone-1'), 'both connected', 30_000);
      await c2dReaches(['keep-1', 'gone-1'], out, 'before');
      assert.equal(await deleteDevice(hub, 'gone-1'), 204);
      // IoT Hub ends a deleted device's connection; the local hub forgets it at a restart, which ends them all.
      await hub.stop();
      hub = await startHub({ dataDir, ports, autoRegister: false });
      await waitFor(
        () => hub.isDeviceConnected('keep-1') && hub.isDeviceConnected('gone-1'),
        'both back, gone-1 registered again',
        60_000,
      );
      assert.equal(hub.stats().dpsRegistrations, 1, 'gone-1 registered again, keep-1 did not');
      await c2dReaches(['keep-1', 'gone-1'], out, 'after');
    } finally {
      await helper.unload().catch(() => undefined);
      await helper.stopServer();
      await hub.stop();
    }
  },
);

test('msg.action connect provisions a group device, and one with its own key (msg.sharedAccessKey); c2d send refuses a DPS config', async () => {
  const hub = await dpsHub();
  helper.settings({ userDir: userDir() });
  await helper.startServer();
  const { flow, credentials } = flowWith(
    hub,
    [dpsConfig(hub, 'dpsM')],
    [{ id: 'rm', connection: 'dpsM', deviceId: '' }],
  );
  flow.push(
    at({
      id: 'sendDps',
      type: 'iothub-c2d-send',
      connection: 'dpsM',
      deviceId: 'x',
      deviceIdType: 'str',
      ack: 'none',
      ttl: '',
      trackDelivery: false,
      mappings: [],
      wires: [],
    }),
  );
  try {
    await helper.load(nodeModules, flow, credentials);
    const out = [];
    helper.getNode('out').on('input', (m) => out.push(m));
    const caught = [];
    helper.getNode('caught').on('input', (m) => caught.push(m));
    const sendDps = watch(helper.getNode('sendDps'));
    const recv = helper.getNode('rm');
    recv.receive({ action: 'connect', deviceId: 'by-msg-1' });
    recv.receive({ action: 'connect', deviceId: 'solo', sharedAccessKey: SOLO_KEY });
    await waitFor(
      () => hub.isDeviceConnected('by-msg-1') && hub.isDeviceConnected('solo'),
      'both connected by msg',
      30_000,
    );
    await c2dReaches(['by-msg-1', 'solo'], out, 'msg');
    assert.equal(hub.stats().dpsRegistrations, 2);
    recv.receive({ action: 'list', topic: 'list' });
    await waitFor(() => out.some((m) => m.topic === 'list'), 'the list');
    assert.deepEqual(
      out
        .find((m) => m.topic === 'list')
        .payload.map((d) => d.deviceId)
        .sort(),
      ['by-msg-1', 'solo'],
    );
    recv.receive({ action: 'connect', deviceId: 'not/allowed' });
    await waitFor(() => caught.length === 1, 'a bad registration id caught');
    assert.match(caught[0].error.message, /registration id|device id/);
    await waitFor(() => sendDps.said.some((t) => /device receive only/.test(t)), 'c2d send says why it cannot send');
    noKeyIn(JSON.stringify([out, caught, sendDps]), [GROUP_KEY, SOLO_KEY, deriveDeviceKey(GROUP_KEY, 'by-msg-1')]);
  } finally {
    await helper.unload().catch(() => undefined);
    await helper.stopServer();
    await hub.stop();
  }
});

test('100 devices of one group through one device receive node (list mode): exactly 100 registrations', async () => {
  const hub = await dpsHub();
  const ids = Array.from({ length: 100 }, (_, i) => `unit-${String(i).padStart(3, '0')}`);
  helper.settings({ userDir: userDir() });
  await helper.startServer();
  const { flow, credentials } = flowWith(
    hub,
    [dpsConfig(hub, 'dpsF')],
    [{ id: 'rf', connection: 'dpsF', deviceId: ids.join('\n') }],
  );
  try {
    const started = Date.now();
    await helper.load(nodeModules, flow, credentials);
    await waitFor(() => ids.every((id) => hub.isDeviceConnected(id)), '100 devices provisioned and connected', 120_000);
    const ms = Date.now() - started;
    const out = [];
    helper.getNode('out').on('input', (m) => out.push(m));
    await c2dReaches(ids, out, 'hello');
    console.log(
      `# 100 devices of one group in one node: registered and connected in ${ms} ms, ${hub.stats().dpsRegistrations} DPS registrations`,
    );
    assert.equal(hub.stats().dpsRegistrations, 100);
    assert.equal(out.filter((m) => m.payload !== `hello:${m.deviceId}`).length, 0, 'no message crossed');
  } finally {
    await helper.unload().catch(() => undefined);
    await helper.stopServer();
    await hub.stop();
  }
});

test('the IoT Central offline commands example runs on the built-in local hub', { timeout: 60_000 }, async () => {
  const file = fs.readdirSync(path.join(root, 'examples')).find((f) => /IoT Central offline commands/.test(f));
  assert.ok(file, 'the example exists');
  const example = JSON.parse(fs.readFileSync(path.join(root, 'examples', file), 'utf8'));
  const dir = userDir();
  helper.settings({ userDir: dir });
  await helper.startServer();
  // Its config nodes on ephemeral ports and a data dir of its own; debug nodes become helpers the test listens to.
  const flow = example.map((n) => {
    if (n.type === 'iothub-connection')
      return { ...n, localHub: { mqttsPort: 0, amqpsPort: 0, httpsPort: 0, dataDir: path.join(dir, 'hub') } };
    if (n.type === 'debug') return { id: n.id, z: n.z, type: 'helper', name: n.name };
    return n;
  });
  const load = [
    ...nodeModules,
    require('@node-red/nodes/core/common/20-inject.js'),
    require('@node-red/nodes/core/function/10-switch.js'),
    require('@node-red/nodes/core/function/10-function.js'),
    require('@node-red/nodes/core/common/90-comment.js'),
  ];
  try {
    await helper.load(load, flow, {});
    const byName = (name) => flow.find((n) => n.type === 'helper' && n.name === name);
    const got = {};
    for (const name of ['reboot', 'setLedColor']) {
      got[name] = [];
      helper.getNode(byName(name).id).on('input', (m) => got[name].push(m));
    }
    await waitFor(() => got.reboot.length > 0 && got.setLedColor.length > 0, 'both commands routed', 45_000);
    assert.equal(got.reboot[0].properties['method-name'], 'reboot');
    assert.equal(got.setLedColor[0].properties['method-name'], 'setLedColor');
    assert.ok(!fs.readFileSync(path.join(root, 'examples', file), 'utf8').match(/"dpsKey"|SharedAccessKey=/));
  } finally {
    await helper.unload().catch(() => undefined);
    await helper.stopServer();
  }
});

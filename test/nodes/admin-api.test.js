'use strict';
// The sidebar's admin endpoints in a real Node-RED with adminAuth on: who may read, who may purge and create, what the
// answers hold (never a key, but the connection string of a device just created), and ids checked before use.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const bcrypt = require('bcryptjs');
const { startNodeRed, root } = require('../../scripts/node-red-runtime');
const { startHub } = require('../support/flows');

/** Asks again (one request at a time) until the answer passes `check`; fails after timeoutMs saying what it waited for. */
async function poll(ask, check, what, timeoutMs = 20000) {
  const started = Date.now();
  for (;;) {
    const r = await ask();
    if (check(r)) return r;
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out waiting for ${what}: last answer ${r.status} ${r.text}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

const ADMIN_PW = 'admin-pass-1';
const READER_PW = 'reader-pass-1';
const ADMIN_TOKEN = 'admin-token-0123456789';
const READER_TOKEN = 'reader-token-0123456789';
const KEYISH = /SharedAccessKey|primaryKey|secondaryKey|sig=|SharedAccessSignature/i;

function flows(dataDir, remote) {
  return [
    // A config node in Azure mode, pointed at a hub of its own: the sidebar reads it through IoT Hub's REST registry API.
    {
      id: 'cfgAzure00000001',
      type: 'iothub-connection',
      name: 'azure',
      mode: 'azure',
      connectionStringEnv: 'IOTHUB_ADMIN_TEST_HUB',
      deviceTransport: 'mqtt',
      serviceTransport: 'amqp',
      tokenLifetime: 3600,
      mqttPort: remote.ports.mqtts,
      amqpPort: remote.ports.amqps,
      wsPort: remote.ports.https,
    },
    { id: 'tab', type: 'tab', label: 'admin' },
    {
      id: 'cfg0000000000001',
      type: 'iothub-connection',
      name: 'local',
      mode: 'local',
      deviceTransport: 'mqtt',
      serviceTransport: 'amqp',
      tokenLifetime: 3600,
      localHub: { mqttsPort: 0, amqpsPort: 0, httpsPort: 0, dataDir },
    },
    {
      id: 'inj',
      type: 'inject',
      z: 'tab',
      props: [{ p: 'payload' }],
      repeat: '',
      once: false,
      payload: 'for sleepy',
      payloadType: 'str',
      x: 100,
      y: 100,
      wires: [['send']],
    },
    {
      id: 'send',
      type: 'iothub-c2d-send',
      z: 'tab',
      connection: 'cfg0000000000001',
      deviceId: 'sleepy',
      deviceIdType: 'str',
      ack: 'full',
      ttl: '',
      mappings: [],
      trackDelivery: true,
      trackTimeout: 60,
      x: 300,
      y: 100,
      wires: [[]],
    },
  ];
}

function request(port, method, urlPath, { token, body } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        agent: false,
        headers: {
          ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

test('admin endpoints with adminAuth on', { timeout: 120000 }, async (t) => {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-admin-'));
  // The "Azure" hub: another local hub, trusted through NODE_EXTRA_CA_CERTS like a public CA (scripts/test.js).
  const remote = await startHub({ devices: ['r1', 'r2'] });
  process.env.IOTHUB_ADMIN_TEST_HUB = remote.hubConnectionString;
  const red = await startNodeRed({
    userDir,
    flows: flows(path.join(userDir, 'hub'), remote),
    logLevel: 'warn',
    credentialSecret: 'admin-test-secret',
    settings: {
      adminAuth: {
        type: 'credentials',
        users: [
          { username: 'admin', password: bcrypt.hashSync(ADMIN_PW, 8), permissions: '*' },
          { username: 'reader', password: bcrypt.hashSync(READER_PW, 8), permissions: 'read' },
        ],
        // Bearer tokens as the editor sends after its login; static ones, because a password login arms a session
        // expiry timer in Node-RED that its stop() does not clear (the handle check would fail the file).
        tokens: [
          { token: ADMIN_TOKEN, user: 'admin', scope: '*' },
          { token: READER_TOKEN, user: 'reader', scope: 'read' },
        ],
      },
    },
  });
  t.after(async () => {
    await red.stop();
    await remote.stop();
    delete process.env.IOTHUB_ADMIN_TEST_HUB;
    const { releaseLocalHub } = require(path.join(root, 'nodes', 'localhub', 'shared-hub.js'));
    await releaseLocalHub(0);
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  const port = red.port;
  const base = '/iothub-c2d/hub/cfg0000000000001';
  const admin = ADMIN_TOKEN;
  const reader = READER_TOKEN;

  // The admin creates "sleepy"; the inject (pressed through Node-RED's own API) sends it one tracked message.
  // (Node-RED starts the flows after start() resolves: until then the config node is not there.)
  const made = await poll(
    () => request(port, 'POST', `${base}/devices`, { token: admin, body: { deviceId: 'sleepy' } }),
    (r) => r.status !== 404,
    'the config node deployed',
  );
  assert.equal(made.status, 200, made.text);
  const pressed = await request(port, 'POST', '/inject/inj', { token: admin });
  assert.equal(pressed.status, 200, pressed.text);
  const list = await poll(
    () => request(port, 'GET', `${base}/devices`, { token: reader }),
    (r) => r.status === 200 && r.json.devices.some((d) => d.deviceId === 'sleepy' && d.queued === 1),
    'sleepy with 1 queued, read by the reader',
  );
  assert.equal(list.json.source, 'local');
  assert.equal(list.json.canCreate, true);
  assert.deepEqual(
    list.json.devices.find((d) => d.deviceId === 'sleepy'),
    {
      deviceId: 'sleepy',
      status: 'enabled',
      connectionState: 'Disconnected',
      queued: 1,
      locked: 0,
    },
  );
  assert.doesNotMatch(list.text, KEYISH);

  await t.test('anonymous: 401 on every endpoint', async () => {
    for (const [method, p] of [
      ['GET', `${base}/devices`],
      ['GET', `${base}/feedback`],
      ['GET', `${base}/sends`],
      ['POST', `${base}/devices/sleepy/purge`],
      ['POST', `${base}/devices`],
    ]) {
      const r = await request(port, method, p, { body: method === 'POST' ? { deviceId: 'x' } : undefined });
      assert.equal(r.status, 401, `${method} ${p}`);
      assert.doesNotMatch(r.text, KEYISH);
    }
    const bogus = await request(port, 'GET', `${base}/devices`, { token: 'not-a-token' });
    assert.equal(bogus.status, 401);
  });

  await t.test('the read-only user reads, but cannot purge or create (403); nothing changed', async () => {
    for (const p of ['/feedback', '/sends']) {
      const r = await request(port, 'GET', `${base}${p}`, { token: reader });
      assert.equal(r.status, 200, p);
      assert.doesNotMatch(r.text, KEYISH);
    }
    const purge = await request(port, 'POST', `${base}/devices/sleepy/purge`, { token: reader });
    assert.equal(purge.status, 403);
    const create = await request(port, 'POST', `${base}/devices`, { token: reader, body: { deviceId: 'sneaky' } });
    assert.equal(create.status, 403);
    const after = await request(port, 'GET', `${base}/devices`, { token: reader });
    assert.equal(after.json.devices.find((d) => d.deviceId === 'sleepy').queued, 1, 'still queued');
    assert.ok(!after.json.devices.some((d) => d.deviceId === 'sneaky'), 'not created');
  });

  await t.test('ids are checked before use', async () => {
    const cases = [
      ['GET', '/iothub-c2d/hub/..%2F..%2Fx/devices', 400],
      ['GET', '/iothub-c2d/hub/0123456789abcdef/devices', 404],
      ['GET', '/iothub-c2d/hub/tab/devices', 404],
      ['POST', `${base}/devices/bad%20id/purge`, 400],
      ['POST', `${base}/devices/${'x'.repeat(129)}/purge`, 400],
      ['POST', `${base}/devices/nobody/purge`, 404],
    ];
    for (const [method, p, status] of cases) {
      const r = await request(port, method, p, { token: admin });
      assert.equal(r.status, status, `${method} ${p}: ${r.text}`);
      assert.ok(r.json?.error?.message, 'a message saying what is wrong');
    }
    const bad = await request(port, 'POST', `${base}/devices`, { token: admin, body: { deviceId: 'a b' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.field, 'deviceId');
    const none = await request(port, 'POST', `${base}/devices`, { token: admin, body: {} });
    assert.equal(none.status, 400);
  });

  await t.test('the admin creates a device (its connection string, the one answer with a key) and purges', async () => {
    const created = await request(port, 'POST', `${base}/devices`, { token: admin, body: { deviceId: 'new-dev' } });
    assert.equal(created.status, 200, created.text);
    assert.equal(created.json.deviceId, 'new-dev');
    assert.match(created.json.connectionString, /^HostName=localhost:\d+;DeviceId=new-dev;SharedAccessKey=[^;]+$/);
    const again = await request(port, 'POST', `${base}/devices`, { token: admin, body: { deviceId: 'new-dev' } });
    assert.equal(again.status, 409);
    assert.doesNotMatch(again.text, KEYISH);

    const purged = await request(port, 'POST', `${base}/devices/sleepy/purge`, { token: admin });
    assert.equal(purged.status, 200, purged.text);
    assert.deepEqual(purged.json, { totalMessagesPurged: 1, deviceId: 'sleepy' });

    const after = await request(port, 'GET', `${base}/devices`, { token: admin });
    assert.deepEqual(
      after.json.devices.map((d) => [d.deviceId, d.queued]),
      [
        ['new-dev', 0],
        ['sleepy', 0],
      ],
    );
    assert.doesNotMatch(after.text, KEYISH);

    // The purge's feedback reaches the send node's tracking: counted, and the send's state is "purged".
    const fb = await poll(
      () => request(port, 'GET', `${base}/feedback?minutes=5`, { token: admin }),
      (r) => r.json?.totals?.Purged === 1,
      'one Purged counted',
    );
    assert.equal(fb.json.listening, true);
    assert.equal(fb.json.buckets.length, 30, '5 minutes of 10 s buckets');
    assert.deepEqual(fb.json.totals, { Success: 0, Expired: 0, Rejected: 0, DeliveryCountExceeded: 0, Purged: 1 });
    const sends = await request(port, 'GET', `${base}/sends`, { token: admin });
    assert.equal(sends.json.sends.length, 1);
    assert.equal(sends.json.sends[0].deviceId, 'sleepy');
    assert.equal(sends.json.sends[0].state, 'purged');
    for (const r of [fb, sends]) assert.doesNotMatch(r.text, KEYISH);
  });

  await t.test('Azure mode: the registry over REST gives cloudToDeviceMessageCount; no key; no create', async () => {
    const azure = '/iothub-c2d/hub/cfgAzure00000001';
    // Two messages wait for r2 on the remote hub (sent by its own service client through the remote's queues).
    const { Client: ServiceClient } = require('azure-iothub');
    const { Message } = require('azure-iot-common');
    const svc = ServiceClient.fromConnectionString(remote.hubConnectionString);
    try {
      await svc.open();
      await svc.send('r2', new Message('one'));
      await svc.send('r2', new Message('two'));
    } finally {
      await svc.close();
    }
    const r = await request(port, 'GET', `${azure}/devices`, { token: reader });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.source, 'azure');
    assert.equal(r.json.canCreate, false);
    assert.deepEqual(
      r.json.devices.map((d) => [d.deviceId, d.queued, d.connectionState]),
      [
        ['r1', 0, 'Disconnected'],
        ['r2', 2, 'Disconnected'],
      ],
    );
    // The REST registry answer carries every device's keys: none of them reaches the editor.
    assert.doesNotMatch(r.text, KEYISH);
    const create = await request(port, 'POST', `${azure}/devices`, { token: admin, body: { deviceId: 'r3' } });
    assert.equal(create.status, 400);
    assert.match(create.json.error.message, /only on the local hub/);
    const purged = await request(port, 'POST', `${azure}/devices/r2/purge`, { token: admin });
    assert.deepEqual(purged.json, { totalMessagesPurged: 2, deviceId: 'r2' });
    assert.equal(remote.queueLength('r2'), 0);
  });
});

'use strict';
// What the TLS connections of many devices to one hub share (src/core/dial-share.ts): one SecureContext per trust
// setting, the hub's last session (resumed by the next connection) and the host's looked-up address.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');
const { dialShare } = require('../../nodes/core/dial-share.js');
const { resolveEndpoint } = require('../../nodes/core/endpoint.js');
const { ensureTlsMaterial } = require('../../nodes/localhub/tls.js');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dial-share-'));
const material = ensureTlsMaterial(dir, []);

async function withServer(fn) {
  const sockets = new Set();
  const server = tls.createServer({ key: material.keyPem, cert: material.certPem }, (s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    // A TLS 1.3 server sends its session tickets with its first write (the hub's CONNACK).
    s.write('hello');
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  try {
    return await fn(server.address().port);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
}

/**
 * One connection as mqtt-device makes it (the share's context, session and lookup). Resolves once it is secure and, with
 * waitSession, once the hub's session came too (a resumed TLS 1.3 session brings no new one).
 */
function dial(e, share, waitSession = false) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: e.host,
      port: e.port,
      servername: e.servername,
      rejectUnauthorized: e.rejectUnauthorized,
      secureContext: share.secureContext,
      session: share.session,
      lookup: share.lookup,
    });
    share.watch(s);
    s.on('error', reject);
    const secure = new Promise((r) => s.once('secureConnect', r));
    const session = waitSession ? new Promise((r) => s.once('session', r)) : undefined;
    Promise.all([secure, session]).then(() => {
      const r = { authorized: s.authorized, reused: s.isSessionReused() };
      s.destroy();
      resolve(r);
    });
  });
}

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('one share per endpoint and trust setting; one SecureContext per CA', () => {
  const e = resolveEndpoint({ hostName: 'localhost', port: 1, ca: material.caPem }, 8883);
  const a = dialShare(e);
  assert.equal(dialShare({ ...e }), a, 'the same endpoint, the same share');
  const lax = dialShare({ ...e, rejectUnauthorized: false });
  assert.notEqual(lax, a, 'a session checked under another trust setting is not offered');
  assert.equal(lax.secureContext, a.secureContext, 'the same CA, one context');
  assert.notEqual(dialShare({ ...e, ca: undefined }).secureContext, a.secureContext, 'another CA, another context');
});

test('the second connection resumes the session the hub gave the first, and is still authorized', () =>
  withServer(async (port) => {
    const e = resolveEndpoint({ hostName: 'localhost', port, ca: material.caPem }, 8883);
    const share = dialShare(e);
    assert.equal(share.session, undefined);
    const first = await dial(e, share, true);
    assert.deepEqual(first, { authorized: true, reused: false });
    assert.ok(Buffer.isBuffer(share.session), 'the hub’s session is kept');
    const again = await Promise.all([dial(e, share), dial(e, share)]);
    assert.deepEqual(again, [
      { authorized: true, reused: true },
      { authorized: true, reused: true },
    ]);
  }));

test('a connection that fails its handshake drops the session it offered', () =>
  withServer(async (port) => {
    // Trusting another CA: the hub's certificate fails the check; the session offered with it must not stay.
    const other = ensureTlsMaterial(fs.mkdtempSync(path.join(dir, 'other-')), []);
    const e = resolveEndpoint({ hostName: 'localhost', port, ca: other.caPem }, 8883);
    const share = dialShare(e);
    share.session = Buffer.from('not a session');
    await assert.rejects(dial(e, share));
    assert.equal(share.session, undefined);
  }));

test('concurrent lookups of one host get one answer', async () => {
  const e = resolveEndpoint({ hostName: 'localhost', port: 2, ca: material.caPem }, 8883);
  const { lookup } = dialShare(e);
  const ask = () =>
    new Promise((resolve, reject) =>
      lookup('localhost', { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))),
    );
  const answers = await Promise.all([ask(), ask(), ask()]);
  assert.ok(answers[0].length > 0);
  assert.deepEqual(answers[1], answers[0]);
  assert.deepEqual(answers[2], answers[0]);
});

const { DeviceClient } = require('../../nodes/core/device-client.js');

/** The local hub on ephemeral ports, registering devices as they come, and its owner key. */
async function startLocalHub() {
  const { start } = require('../../nodes/localhub/index.js');
  const hub = await start({
    dataDir: fs.mkdtempSync(path.join(dir, 'hub-')),
    ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0 },
    autoRegister: true,
  });
  return { hub, hubKey: /SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1] };
}

test('the local hub resumes the TLS session it gave an MQTT device', async () => {
  const { hub, hubKey } = await startLocalHub();
  const o = { hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.mqtts, ca: hub.caPem };
  const d = new DeviceClient({
    ...o,
    deviceId: 'resume-1',
    transport: 'mqtt',
    credentials: { sharedAccessKey: hubKey, sharedAccessKeyName: 'iothubowner' },
  });
  try {
    const share = dialShare(resolveEndpoint(o, 8883));
    const connected = new Promise((r) => d.on('status', (e) => e.state === 'connected' && r()));
    d.open();
    await connected;
    // The CONNACK carried the hub's session tickets to the device's connection.
    while (!share.session) await new Promise((r) => setImmediate(r));
    assert.deepEqual(await dial(resolveEndpoint(o, 8883), share), { authorized: true, reused: true });
  } finally {
    await d.close();
    await hub.stop();
  }
});

test('AMQP devices share it too: the second of two resumes the session the hub gave the first', async () => {
  const { hub, hubKey } = await startLocalHub();
  const o = { hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.amqps, ca: hub.caPem };
  const share = dialShare(resolveEndpoint(o, 5671));
  // Every TLS socket this process opens, to see what the devices' own connections did.
  const sockets = [];
  const connect = tls.connect;
  tls.connect = (...args) => {
    const s = connect.apply(tls, args);
    sockets.push({ s, context: args.find((a) => a && typeof a === 'object')?.secureContext });
    return s;
  };
  const devices = ['amqp-resume-1', 'amqp-resume-2'].map(
    (deviceId) =>
      new DeviceClient({
        ...o,
        deviceId,
        transport: 'amqp',
        credentials: { sharedAccessKey: hubKey, sharedAccessKeyName: 'iothubowner' },
      }),
  );
  try {
    const up = (d) => new Promise((r) => d.on('status', (e) => e.state === 'connected' && r()));
    const first = up(devices[0]);
    devices[0].open();
    await first;
    // The first device's connection hands the hub's session to the share (a condition, not a time: 30 s is a bound).
    const until = Date.now() + 30_000;
    while (!share.session && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    assert.ok(share.session, "the first AMQP device's connection gave the share the hub's session");
    const second = up(devices[1]);
    devices[1].open();
    await second;
    assert.equal(sockets.length, 2, 'one TLS connection per device');
    assert.ok(
      sockets.every((x) => x.context === share.secureContext),
      'both dialled with the shared context',
    );
    assert.deepEqual(
      sockets.map((x) => x.s.isSessionReused()),
      [false, true],
    );
    assert.ok(sockets[1].s.authorized, 'the resumed connection is still authorized');
  } finally {
    tls.connect = connect;
    await Promise.all(devices.map((d) => d.close()));
    await hub.stop();
  }
});

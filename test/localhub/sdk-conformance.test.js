'use strict';
// The official Azure IoT SDKs, unmodified, against the local hub: the measure of its fidelity.
// They trust the hub through NODE_EXTRA_CA_CERTS (set by scripts/test.js) and the device's ca option.
const test = require('node:test');
const assert = require('node:assert/strict');
const https = require('node:https');
const { spawnSync } = require('node:child_process');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Amqp } = require('azure-iot-device-amqp');
const { Client: ServiceClient } = require('azure-iothub');
const { Message, NoRetry } = require('azure-iot-common');
const { start } = require('../../nodes/localhub/index.js');
const { createSasToken } = require('../../nodes/core/sas.js');
const { hubDataDir, waitFor } = require('../support/flows');

const UUID = '6f1c3e2a-8b4d-4c5e-9f60-123456789abc';
const HOSTILE = 'v & = % + # / $ é 漢字';

async function hubWith(options = {}) {
  return start({
    dataDir: hubDataDir(),
    ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0 },
    feedbackBatchMs: 20,
    ...options,
  });
}

function deviceString(hub, id, transport) {
  const s = hub.deviceConnectionString(id);
  return transport === Amqp ? s.replace(/HostName=[^;]+/, `HostName=localhost:${hub.ports.amqps}`) : s;
}

async function openDevice(str, transport, ca, onMessage) {
  const dev = DeviceClient.fromConnectionString(str, transport);
  dev.setOptions({ ca });
  dev.on('error', () => undefined);
  if (onMessage) dev.on('message', (m) => onMessage(m, dev));
  await dev.open();
  return dev;
}

async function openService(hub) {
  const svc = ServiceClient.fromConnectionString(hub.hubConnectionString);
  await svc.open();
  const feedback = [];
  const receiver = await new Promise((res, rej) => svc.getFeedbackReceiver((e, r) => (e ? rej(e) : res(r))));
  receiver.on('message', (m) => {
    feedback.push(...JSON.parse(m.data.toString()));
  });
  return { svc, feedback };
}

function c2d(i, extra = {}) {
  const m = new Message(JSON.stringify({ i, text: HOSTILE }));
  m.messageId = i === 0 ? UUID : `msg-${i}`;
  m.correlationId = `corr ${i} & =`;
  m.contentType = 'application/json';
  m.contentEncoding = 'utf-8';
  m.expiryTimeUtc = Date.now() + 600_000;
  m.ack = 'full';
  m.properties.add('prop one', HOSTILE);
  m.properties.add('n', String(i));
  Object.assign(m, extra);
  return m;
}

function props(m) {
  return Object.fromEntries(
    m.properties.propertyList.filter((p) => p.key !== 'iothub-ack').map((p) => [p.key, p.value]),
  );
}

test('azure-iothub send reaches azure-iot-device over MQTT and AMQP with every property; feedback Success', async () => {
  const hub = await hubWith({ devices: ['mqtt-dev', 'amqp-dev'] });
  const { svc, feedback } = await openService(hub);
  try {
    for (const [id, transport] of [
      ['mqtt-dev', Mqtt],
      ['amqp-dev', Amqp],
    ]) {
      const got = [];
      const dev = await openDevice(deviceString(hub, id, transport), transport, hub.caPem, (m, d) => {
        got.push(m);
        d.complete(m, () => undefined);
      });
      for (let i = 0; i < 3; i++) await svc.send(id, c2d(i));
      await waitFor(() => got.length === 3, `${id} receives 3`);
      got.forEach((m, i) => {
        assert.equal(m.messageId, i === 0 ? UUID : `msg-${i}`);
        assert.equal(m.correlationId, `corr ${i} & =`);
        assert.equal(m.contentType, 'application/json');
        assert.equal(m.contentEncoding, 'utf-8');
        assert.deepEqual(JSON.parse(m.data.toString()), { i, text: HOSTILE });
        assert.deepEqual(props(m), { 'prop one': HOSTILE, n: String(i) });
      });
      await waitFor(() => feedback.filter((r) => r.deviceId === id).length === 3, `${id} feedback`);
      const mine = feedback.filter((r) => r.deviceId === id);
      assert.deepEqual(mine.map((r) => r.originalMessageId).sort(), [UUID, 'msg-1', 'msg-2'].sort());
      assert.ok(mine.every((r) => r.statusCode === 'Success'));
      await dev.close();
    }
  } finally {
    await svc.close();
    await hub.stop();
  }
});

test('MQTT over WebSockets (the SDK always dials port 443)', async (t) => {
  let hub;
  try {
    hub = await start({
      dataDir: hubDataDir(),
      ports: { mqtts: 0, amqps: 0, amqp: 0, https: 443 },
      devices: ['ws-dev'],
      feedbackBatchMs: 20,
    });
  } catch (err) {
    if (process.env.CI) throw err;
    t.skip(`port 443 is not available here (${err.message}); CI runs this`);
    return;
  }
  const { svc, feedback } = await openService(hub);
  try {
    const str = hub.deviceConnectionString('ws-dev').replace(/HostName=[^;]+/, 'HostName=localhost');
    const got = [];
    const dev = await openDevice(str, MqttWs, hub.caPem, (m, d) => {
      got.push(m);
      d.complete(m, () => undefined);
    });
    await svc.send('ws-dev', c2d(7));
    await waitFor(() => got.length === 1, 'ws device receives');
    assert.equal(got[0].messageId, 'msg-7');
    assert.deepEqual(props(got[0]), { 'prop one': HOSTILE, n: '7' });
    await waitFor(
      () => feedback.some((r) => r.originalMessageId === 'msg-7' && r.statusCode === 'Success'),
      'feedback',
    );
    await dev.close();
  } finally {
    await svc.close();
    await hub.stop();
  }
});

test('reject -> Rejected, repeated abandon -> DeliveryCountExceeded, expiry -> Expired, purge -> Purged', async () => {
  const hub = await hubWith({ devices: ['rej', 'aband', 'sleepy', 'purge'], maxDeliveryCount: 3 });
  const { svc, feedback } = await openService(hub);
  try {
    const rej = await openDevice(deviceString(hub, 'rej', Amqp), Amqp, hub.caPem, (m, d) =>
      d.reject(m, () => undefined),
    );
    await svc.send('rej', c2d(1));
    await waitFor(
      () => feedback.some((r) => r.originalMessageId === 'msg-1' && r.statusCode === 'Rejected'),
      'Rejected',
    );
    await rej.close();

    let deliveries = 0;
    const ab = await openDevice(deviceString(hub, 'aband', Amqp), Amqp, hub.caPem, (m, d) => {
      deliveries++;
      d.abandon(m, () => undefined);
    });
    await svc.send('aband', c2d(2));
    await waitFor(
      () => feedback.some((r) => r.originalMessageId === 'msg-2' && r.statusCode === 'DeliveryCountExceeded'),
      'DeliveryCountExceeded',
    );
    assert.equal(deliveries, 3);
    await ab.close();

    await svc.send('sleepy', c2d(3, { expiryTimeUtc: Date.now() + 2000 }));
    await waitFor(
      () => feedback.some((r) => r.originalMessageId === 'msg-3' && r.statusCode === 'Expired'),
      'Expired',
      8000,
    );

    await svc.send('purge', c2d(4));
    await svc.send('purge', c2d(5));
    const owner = /SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1];
    const auth = createSasToken({
      resourceUri: 'localhost',
      key: owner,
      keyName: 'iothubowner',
      expiresAt: Date.now() / 1000 + 600,
    });
    const body = await new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: hub.ports.https,
          servername: 'localhost',
          method: 'DELETE',
          path: '/devices/purge/commands?api-version=2021-04-12',
          headers: { authorization: auth },
          ca: hub.caPem,
        },
        (res) => {
          let text = '';
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(text) }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(body.status, 200);
    assert.deepEqual(body.json, { totalMessagesPurged: 2, deviceId: 'purge', moduleId: null });
    await waitFor(
      () =>
        ['msg-4', 'msg-5'].every((id) => feedback.some((r) => r.originalMessageId === id && r.statusCode === 'Purged')),
      'Purged',
    );
  } finally {
    await svc.close();
    await hub.stop();
  }
});

test("queue full on the 51st, unknown device, wrong keys: the SDKs' own error types", async () => {
  const hub = await hubWith({ devices: ['full'] });
  const { svc } = await openService(hub);
  try {
    for (let i = 0; i < 50; i++) await svc.send('full', new Message(`m${i}`));
    await assert.rejects(
      svc.send('full', new Message('m50')),
      (e) => e.constructor.name === 'DeviceMaximumQueueDepthExceededError',
    );
    await assert.rejects(svc.send('ghost', new Message('x')), (e) => e.constructor.name === 'DeviceNotFoundError');

    const badService = ServiceClient.fromConnectionString(
      hub.hubConnectionString.replace(
        /SharedAccessKey=[^;]+/,
        `SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')}`,
      ),
    );
    badService.setRetryPolicy(new NoRetry());
    // The service SDK wraps the CBS 401 it turned into UnauthorizedError: Error('...Could not connect') with .amqpError.
    await assert.rejects(
      badService.open(),
      (e) => e.constructor.name === 'UnauthorizedError' || e.amqpError?.constructor.name === 'UnauthorizedError',
    );
    await badService.close().catch(() => undefined);

    const badDevice = DeviceClient.fromConnectionString(
      deviceString(hub, 'full', Mqtt).replace(
        /SharedAccessKey=[^;]+/,
        `SharedAccessKey=${Buffer.alloc(32, 2).toString('base64')}`,
      ),
      Mqtt,
    );
    badDevice.setOptions({ ca: hub.caPem });
    badDevice.setRetryPolicy(new NoRetry());
    await assert.rejects(badDevice.open(), (e) => e.constructor.name === 'UnauthorizedError');
  } finally {
    await svc.close();
    await hub.stop();
  }
});

test('a hub restart with messages queued loses none of them', async () => {
  const dataDir = hubDataDir();
  const first = await start({ dataDir, ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0 }, devices: ['keep'] });
  const { svc } = await openService(first);
  for (let i = 0; i < 20; i++) await svc.send('keep', c2d(i));
  await svc.close();
  await first.stop();
  const second = await start({ dataDir, ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0 } });
  try {
    assert.equal(second.queueLength('keep'), 20);
    const got = [];
    const dev = await openDevice(second.deviceConnectionString('keep'), Mqtt, second.caPem, (m, d) => {
      got.push(m.messageId);
      d.complete(m, () => undefined);
    });
    await waitFor(() => got.length === 20, '20 messages after the restart');
    assert.deepEqual(
      got,
      Array.from({ length: 20 }, (_, i) => (i === 0 ? UUID : `msg-${i}`)),
    );
    await dev.close();
  } finally {
    await second.stop();
  }
});

test('mosquitto_sub, a third-party MQTT client, receives a C2D message sent by the official service SDK', async (t) => {
  const which = spawnSync('sh', ['-c', 'command -v mosquitto_sub']);
  if (which.status !== 0) {
    if (process.env.CI) assert.fail('mosquitto_sub is missing: .ci/run installs mosquitto-clients');
    t.skip('mosquitto_sub not installed (apt-get install mosquitto-clients); skipped');
    return;
  }
  const hub = await hubWith({ devices: ['mosq'] });
  const { svc } = await openService(hub);
  try {
    await svc.send('mosq', c2d(9));
    const key = /SharedAccessKey=([^;]+)/.exec(hub.deviceConnectionString('mosq'))[1];
    const token = createSasToken({ resourceUri: 'localhost/devices/mosq', key, expiresAt: Date.now() / 1000 + 600 });
    const { spawn } = require('node:child_process');
    const child = spawn('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(hub.ports.mqtts),
      '--cafile',
      hub.caCertPath,
      '--insecure',
      '-V',
      'mqttv311',
      '-i',
      'mosq',
      '-u',
      'localhost/mosq/?api-version=2021-04-12',
      '-P',
      token,
      '-q',
      '1',
      '-c',
      '-t',
      'devices/mosq/messages/devicebound/#',
      '-C',
      '1',
      '-v',
      '-W',
      '20',
    ]);
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    const code = await new Promise((r) => child.on('close', r));
    assert.equal(code, 0, `mosquitto_sub exit code (${out})`);
    assert.match(out, /^devices\/mosq\/messages\/devicebound\/%24\.mid=msg-9&/);
    assert.match(out, /prop%20one=v%20%26%20%3D%20%25%20%2B%20%23%20%2F%20%24/);
    assert.ok(out.includes(JSON.stringify({ i: 9, text: HOSTILE })));
  } finally {
    await svc.close();
    await hub.stop();
  }
});

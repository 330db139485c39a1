'use strict';
// The local hub refuses what IoT Hub refuses, with the right error, and stays responsive under failed logins.
const test = require('node:test');
const assert = require('node:assert/strict');
const mqtt = require('mqtt');
const { createSasToken } = require('../../nodes/core/sas.js');
const { ServiceClient } = require('../../nodes/core/service-client.js');
const { DeviceClient } = require('../../nodes/core/device-client.js');
const { openAmqpConnection, Cbs, whenOpen } = require('../../nodes/core/amqp-connection.js');
const { resolveEndpoint } = require('../../nodes/core/device-client.js');
const { startHub, waitFor } = require('../support/flows');

const soon = () => Math.floor(Date.now() / 1000) + 600;

/** Resolves with the CONNACK return code (0 = accepted). */
function connack(hub, deviceId, password) {
  return new Promise((resolve) => {
    const c = mqtt.connect(`mqtts://127.0.0.1:${hub.ports.mqtts}`, {
      clientId: deviceId, username: `localhost/${deviceId}/?api-version=2021-04-12`, password, protocolVersion: 4, clean: false,
      ca: hub.caPem, servername: 'localhost', reconnectPeriod: 0, connectTimeout: 10_000,
    });
    c.on('connect', () => { c.end(true); resolve(0); });
    c.on('error', (e) => { c.end(true); resolve(typeof e.code === 'number' ? e.code : -1); });
  });
}

test('local hub security', async (t) => {
  const hub = await startHub({ devices: ['d1', 'd2'] });
  await hub.registerDevice('off', { status: 'disabled' });
  t.after(() => hub.stop());
  const keyOf = (id) => /SharedAccessKey=([^;]+)/.exec(hub.deviceConnectionString(id))[1];
  const policyKey = (name) => /SharedAccessKey=([^;]+)/.exec(hub.policyConnectionString(name))[1];

  await t.test('MQTT: a wrong key, an expired token, another device\'s token, another hub\'s token and a disabled device get CONNACK 5', async () => {
    const good = createSasToken({ resourceUri: 'localhost/devices/d1', key: keyOf('d1'), expiresAt: soon() });
    assert.equal(await connack(hub, 'd1', good), 0, 'the right token is accepted');
    const cases = {
      'wrong key': createSasToken({ resourceUri: 'localhost/devices/d1', key: keyOf('d2'), expiresAt: soon() }),
      'expired token': createSasToken({ resourceUri: 'localhost/devices/d1', key: keyOf('d1'), expiresAt: Math.floor(Date.now() / 1000) - 5 }),
      "another device's token": createSasToken({ resourceUri: 'localhost/devices/d2', key: keyOf('d2'), expiresAt: soon() }),
      "another hub's token": createSasToken({ resourceUri: 'otherhub.azure-devices.net/devices/d1', key: keyOf('d1'), expiresAt: soon() }),
      'a token for a policy without DeviceConnect': createSasToken({ resourceUri: 'localhost', key: policyKey('service'), keyName: 'service', expiresAt: soon() }),
    };
    for (const [what, token] of Object.entries(cases)) assert.equal(await connack(hub, 'd1', token), 5, what);
    const off = createSasToken({ resourceUri: 'localhost/devices/off', key: keyOf('off'), expiresAt: soon() });
    assert.equal(await connack(hub, 'off', off), 5, 'disabled device');
  });

  await t.test('AMQP: a device token opens no service link and no other device\'s link', async () => {
    const e = resolveEndpoint({ hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.amqps, ca: hub.caPem }, 5671);
    const conn = openAmqpConnection(e, false);
    await whenOpen(conn);
    const cbs = new Cbs(conn);
    const token = createSasToken({ resourceUri: 'localhost/devices/d1', key: keyOf('d1'), expiresAt: soon() });
    await cbs.putToken(encodeURIComponent('localhost/devices/d1'), token);
    const refused = (link) => new Promise((resolve) => {
      link.once('sender_close', (ctx) => resolve(ctx.sender.error));
      link.once('receiver_close', (ctx) => resolve(ctx.receiver.error));
    });
    const service = await refused(conn.open_sender({ target: { address: '/messages/devicebound' } }));
    assert.equal(service.condition, 'amqp:unauthorized-access');
    const feedback = await refused(conn.open_receiver({ source: { address: '/messages/serviceBound/feedback' } }));
    assert.equal(feedback.condition, 'amqp:unauthorized-access');
    const other = await refused(conn.open_receiver({ source: { address: '/devices/d2/messages/devicebound' } }));
    assert.equal(other.condition, 'amqp:unauthorized-access');
    cbs.close();
    conn.close();
  });

  await t.test('a back-end token without ServiceConnect is refused: unauthorized, not a retry storm', async () => {
    const s = new ServiceClient({ hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.amqps, ca: hub.caPem, sharedAccessKeyName: 'device', sharedAccessKey: policyKey('device') });
    const states = [];
    s.on('status', (ev) => states.push(ev));
    s.open();
    await waitFor(() => states.some((ev) => ev.state === 'unauthorized'), 'unauthorized');
    const ev = states.find((x) => x.state === 'unauthorized');
    assert.equal(ev.error.code, 'UNAUTHORIZED');
    assert.ok(ev.nextRetryMs >= 8000, `retries slowly (${ev.nextRetryMs} ms)`);
    await assert.rejects(s.send('d1', { body: Buffer.from('x'), properties: {} }), (e) => e.code === 'UNAUTHORIZED');
    await s.close();
  });

  await t.test('1,000 failed logins: a legitimate device still connects and receives meanwhile', async () => {
    const bad = createSasToken({ resourceUri: 'localhost/devices/d2', key: keyOf('d1'), expiresAt: soon() });
    let refusedCount = 0;
    const storm = (async () => {
      for (let round = 0; round < 20; round++) {
        const codes = await Promise.all(Array.from({ length: 50 }, () => connack(hub, 'd2', bad)));
        refusedCount += codes.filter((c) => c === 5).length;
      }
    })();
    const got = [];
    const dev = new DeviceClient({ hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.mqtts, ca: hub.caPem, deviceId: 'd1', transport: 'mqtt', credentials: { sharedAccessKey: keyOf('d1') } });
    dev.on('message', (m) => got.push(m.body.toString()));
    dev.open();
    const s = new ServiceClient({ hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.amqps, ca: hub.caPem, sharedAccessKeyName: 'service', sharedAccessKey: policyKey('service') });
    s.open();
    await s.send('d1', { body: Buffer.from('during the storm'), properties: {} });
    await waitFor(() => got.length === 1, 'the legitimate device receives', 30_000);
    await storm;
    assert.equal(refusedCount, 1000);
    await s.close();
    await dev.close();
  });
});

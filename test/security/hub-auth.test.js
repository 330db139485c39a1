'use strict';
// The local hub refuses what IoT Hub refuses, with the right error, and stays responsive under failed logins.
const test = require('node:test');
const assert = require('node:assert/strict');
const mqtt = require('mqtt');
const { createSasToken } = require('../../nodes/core/sas.js');
const { ServiceClient } = require('../../nodes/core/service-client.js');
const { DeviceClient } = require('../../nodes/core/device-client.js');
const { openAmqpConnection, Cbs, whenOpen } = require('../../nodes/core/amqp-connection.js');
const { resolveEndpoint } = require('../../nodes/core/endpoint.js');
const { startHub, waitFor } = require('../support/flows');

const soon = () => Math.floor(Date.now() / 1000) + 600;

/** Resolves with the CONNACK return code (0 = accepted). */
function connack(hub, deviceId, password) {
  return new Promise((resolve) => {
    const c = mqtt.connect(`mqtts://127.0.0.1:${hub.ports.mqtts}`, {
      clientId: deviceId,
      username: `localhost/${deviceId}/?api-version=2021-04-12`,
      password,
      protocolVersion: 4,
      clean: false,
      ca: hub.caPem,
      servername: 'localhost',
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    c.on('connect', () => {
      c.end(true);
      resolve(0);
    });
    c.on('error', (e) => {
      c.end(true);
      resolve(typeof e.code === 'number' ? e.code : -1);
    });
  });
}

test('local hub security', async (t) => {
  const hubLog = [];
  const hub = await startHub({ devices: ['d1', 'd2'], log: (level, text) => hubLog.push(text) });
  await hub.registerDevice('off', { status: 'disabled' });
  t.after(() => hub.stop());
  const keyOf = (id) => /SharedAccessKey=([^;]+)/.exec(hub.deviceConnectionString(id))[1];
  const policyKey = (name) => /SharedAccessKey=([^;]+)/.exec(hub.policyConnectionString(name))[1];

  await t.test(
    "MQTT: a wrong key, an expired token, another device's token, another hub's token and a disabled device get CONNACK 5",
    async () => {
      const good = createSasToken({ resourceUri: 'localhost/devices/d1', key: keyOf('d1'), expiresAt: soon() });
      assert.equal(await connack(hub, 'd1', good), 0, 'the right token is accepted');
      const cases = {
        'wrong key': createSasToken({ resourceUri: 'localhost/devices/d1', key: keyOf('d2'), expiresAt: soon() }),
        'expired token': createSasToken({
          resourceUri: 'localhost/devices/d1',
          key: keyOf('d1'),
          expiresAt: Math.floor(Date.now() / 1000) - 5,
        }),
        "another device's token": createSasToken({
          resourceUri: 'localhost/devices/d2',
          key: keyOf('d2'),
          expiresAt: soon(),
        }),
        "another hub's token": createSasToken({
          resourceUri: 'otherhub.azure-devices.net/devices/d1',
          key: keyOf('d1'),
          expiresAt: soon(),
        }),
        'a token for a policy without DeviceConnect': createSasToken({
          resourceUri: 'localhost',
          key: policyKey('service'),
          keyName: 'service',
          expiresAt: soon(),
        }),
      };
      for (const [what, token] of Object.entries(cases)) assert.equal(await connack(hub, 'd1', token), 5, what);
      const off = createSasToken({ resourceUri: 'localhost/devices/off', key: keyOf('off'), expiresAt: soon() });
      assert.equal(await connack(hub, 'off', off), 5, 'disabled device');
    },
  );

  await t.test("AMQP: a device token opens no service link and no other device's link", async () => {
    const e = resolveEndpoint(
      { hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.amqps, ca: hub.caPem },
      5671,
    );
    const conn = openAmqpConnection(e, false);
    await whenOpen(conn);
    const cbs = new Cbs(conn);
    const token = createSasToken({ resourceUri: 'localhost/devices/d1', key: keyOf('d1'), expiresAt: soon() });
    await cbs.putToken(encodeURIComponent('localhost/devices/d1'), token);
    const refused = (link) =>
      new Promise((resolve) => {
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

  await t.test(
    'a token that expires on an open connection: MQTT disconnected, AMQP links detached unauthorized; a renewed AMQP token keeps them',
    async () => {
      const expires = Math.floor(Date.now() / 1000) + 2;
      // MQTT: the CONNECT token. The hub closes the connection once it expires, never before.
      const mqttToken = createSasToken({ resourceUri: 'localhost/devices/d1', key: keyOf('d1'), expiresAt: expires });
      const c = mqtt.connect(`mqtts://127.0.0.1:${hub.ports.mqtts}`, {
        clientId: 'd1',
        username: 'localhost/d1/?api-version=2021-04-12',
        password: mqttToken,
        protocolVersion: 4,
        clean: false,
        ca: hub.caPem,
        servername: 'localhost',
        reconnectPeriod: 0,
      });
      await new Promise((resolve, reject) => {
        c.once('connect', resolve);
        c.once('error', reject);
      });
      const mqttClosedAt = await new Promise((resolve) => c.once('close', () => resolve(Date.now() / 1000)));
      assert.ok(mqttClosedAt >= expires, `closed ${(expires - mqttClosedAt).toFixed(2)} s before the token expired`);
      c.end(true);

      // AMQP: a device link and the back end's feedback link on tokens that expire, and a device link whose token is renewed.
      const e = resolveEndpoint(
        { hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.amqps, ca: hub.caPem },
        5671,
      );
      const conn = openAmqpConnection(e, false);
      await whenOpen(conn);
      const cbs = new Cbs(conn);
      const soonGone = Math.floor(Date.now() / 1000) + 2;
      await cbs.putToken(
        encodeURIComponent('localhost/devices/d1'),
        createSasToken({ resourceUri: 'localhost/devices/d1', key: keyOf('d1'), expiresAt: soonGone }),
      );
      await cbs.putToken(
        encodeURIComponent('localhost/devices/d2'),
        createSasToken({ resourceUri: 'localhost/devices/d2', key: keyOf('d2'), expiresAt: soonGone }),
      );
      await cbs.putToken(
        'localhost',
        createSasToken({
          resourceUri: 'localhost',
          key: policyKey('service'),
          keyName: 'service',
          expiresAt: soonGone,
        }),
      );
      const closed = (link) =>
        new Promise((resolve) =>
          link.once('receiver_close', () => resolve({ at: Date.now() / 1000, error: link.error })),
        );
      const open = (address) =>
        new Promise((resolve, reject) => {
          const r = conn.open_receiver({ source: { address }, autoaccept: false });
          r.once('receiver_open', () => resolve(r));
          r.once('receiver_close', () => reject(new Error(`${address} refused: ${r.error?.description}`)));
        });
      const d1 = await open('/devices/d1/messages/devicebound');
      const d2 = await open('/devices/d2/messages/devicebound');
      const feedback = await open('/messages/serviceBound/feedback');
      const d1Closed = closed(d1);
      const feedbackClosed = closed(feedback);
      let d2Closed = false;
      d2.once('receiver_close', () => {
        d2Closed = true;
      });
      await new Promise((r) => setTimeout(r, 1000));
      await cbs.putToken(
        encodeURIComponent('localhost/devices/d2'),
        createSasToken({ resourceUri: 'localhost/devices/d2', key: keyOf('d2'), expiresAt: soon() }),
      );
      for (const [what, p] of [
        ['device link', d1Closed],
        ['feedback link', feedbackClosed],
      ]) {
        const { at, error } = await p;
        assert.equal(error?.condition, 'amqp:unauthorized-access', what);
        assert.match(error.description, /expired .*401003/, what);
        assert.ok(at >= soonGone, `${what} detached ${(soonGone - at).toFixed(2)} s before its token expired`);
      }
      // The sweep runs each second: two more and the renewed device's link is still attached.
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(d2Closed, false, 'the device whose token was renewed keeps its link');
      assert.ok(d2.is_open());
      cbs.close();
      conn.close();
    },
  );

  await t.test(
    'the official device SDKs: renewing 4 s tokens (MQTT, AMQP) they are never cut off; holding a fixed token, disconnected at expiry',
    async () => {
      const { Client, SharedAccessKeyAuthenticationProvider } = require('azure-iot-device');
      const { Mqtt } = require('azure-iot-device-mqtt');
      const { Amqp } = require('azure-iot-device-amqp');
      const { NoRetry } = require('azure-iot-common');
      const svc = new ServiceClient({
        hostName: 'localhost',
        connectHost: '127.0.0.1',
        port: hub.ports.amqps,
        ca: hub.caPem,
        sharedAccessKeyName: 'service',
        sharedAccessKey: policyKey('service'),
      });
      svc.open();
      const renewing = [];
      for (const [id, transport, port] of [
        ['sdk-mqtt', Mqtt, hub.ports.mqtts],
        ['sdk-amqp', Amqp, hub.ports.amqps],
      ]) {
        await hub.registerDevice(id);
        const cs = hub.deviceConnectionString(id).replace(/HostName=[^;]+/, `HostName=localhost:${port}`);
        // 4 s tokens, renewed 2 s before they expire (the SDK's own renewal: MQTT reconnects, AMQP puts a new token).
        const d = Client.fromAuthenticationProvider(
          SharedAccessKeyAuthenticationProvider.fromConnectionString(cs, 4, 2),
          transport,
        );
        d.setOptions({ ca: hub.caPem });
        const got = [];
        d.on('message', (m) => {
          got.push(m.messageId);
          d.complete(m, () => undefined);
        });
        d.on('error', () => undefined);
        await d.open();
        renewing.push({ id, d, got });
      }
      // A device holding a fixed token for 2 s: nothing can renew it.
      const expires = Math.floor(Date.now() / 1000) + 2;
      // The SDK dials the host of the token's resource: the port goes there.
      const sas = createSasToken({
        resourceUri: `localhost:${hub.ports.mqtts}/devices/d2`,
        key: keyOf('d2'),
        expiresAt: expires,
      });
      const fixed = Client.fromConnectionString(
        hub.deviceConnectionString('d2').replace(/SharedAccessKey=[^;]+/, `SharedAccessSignature=${sas}`),
        Mqtt,
      );
      fixed.setOptions({ ca: hub.caPem });
      // No retries: the SDK says what it saw (its default policy retries the expired token for 4 minutes).
      fixed.setRetryPolicy(new NoRetry());
      const fixedGaveUp = new Promise((resolve) => fixed.once('disconnect', resolve));
      fixed.on('message', () => undefined);
      fixed.on('error', () => undefined);
      await fixed.open();
      const sent = [];
      for (let i = 0; i < 10; i++) {
        for (const { id } of renewing) {
          await svc.send(id, { body: Buffer.from('x'), messageId: `${id}-${i}`, properties: {} });
          sent.push(`${id}-${i}`);
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
      await waitFor(() => renewing.every(({ got }) => got.length >= 10), 'every message received').catch((e) => {
        throw new Error(
          `${e.message}: ${renewing.map(({ id, got }) => `${id} ${got.length}`)}; hub: ${hubLog
            .filter((l) => !/d2/.test(l))
            .slice(-12)
            .join(' | ')}`,
        );
      });
      for (const { id, got } of renewing)
        assert.deepEqual([...new Set(got)].sort(), sent.filter((m) => m.startsWith(id)).sort(), id);
      assert.deepEqual(
        hubLog.filter((l) => /sdk-(mqtt|amqp)/.test(l) && /expired/.test(l)),
        [],
        'no renewing SDK was cut off',
      );
      await waitFor(
        () => hubLog.some((l) => /token of device d2 expired; disconnecting/.test(l)),
        'the fixed-token device disconnected',
      );
      const why = await fixedGaveUp;
      assert.match(String(why?.transportObj?.message), /closed/, 'the SDK saw the hub close the connection');
      assert.ok(Date.now() / 1000 >= expires, 'not before its token expired');
      console.log(
        `# SDK devices renewing 4 s tokens over 10 s: ${renewing.map(({ id, got }) => `${id} received ${got.length}`).join(', ')}; none cut off. Fixed-token SDK device: ${hubLog.find((l) => /d2/.test(l))}; the SDK saw: ${why.transportObj.message}`,
      );
      await fixed.close();
      for (const { d } of renewing) await d.close();
      await svc.close();
    },
  );

  await t.test('a back-end token without ServiceConnect is refused: unauthorized, not a retry storm', async () => {
    const s = new ServiceClient({
      hostName: 'localhost',
      connectHost: '127.0.0.1',
      port: hub.ports.amqps,
      ca: hub.caPem,
      sharedAccessKeyName: 'device',
      sharedAccessKey: policyKey('device'),
    });
    const states = [];
    s.on('status', (ev) => states.push(ev));
    s.open();
    await waitFor(() => states.some((ev) => ev.state === 'unauthorized'), 'unauthorized');
    const ev = states.find((x) => x.state === 'unauthorized');
    assert.equal(ev.error.code, 'UNAUTHORIZED');
    // The slow schedule: 10 s ±50 % at first (a plain loss starts at 1 s).
    assert.ok(ev.nextRetryMs >= 5000, `retries slowly (${ev.nextRetryMs} ms)`);
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
    const dev = new DeviceClient({
      hostName: 'localhost',
      connectHost: '127.0.0.1',
      port: hub.ports.mqtts,
      ca: hub.caPem,
      deviceId: 'd1',
      transport: 'mqtt',
      credentials: { sharedAccessKey: keyOf('d1') },
    });
    dev.on('message', (m) => got.push(m.body.toString()));
    dev.open();
    const s = new ServiceClient({
      hostName: 'localhost',
      connectHost: '127.0.0.1',
      port: hub.ports.amqps,
      ca: hub.caPem,
      sharedAccessKeyName: 'service',
      sharedAccessKey: policyKey('service'),
    });
    s.open();
    await s.send('d1', { body: Buffer.from('during the storm'), properties: {} });
    await waitFor(() => got.length === 1, 'the legitimate device receives', 30_000);
    await storm;
    assert.equal(refusedCount, 1000);
    await s.close();
    await dev.close();
  });
});

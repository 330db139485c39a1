'use strict';
// Short-lived SAS tokens: traffic spans several renewals over MQTT and AMQP, nothing lost, no error status.
const test = require('node:test');
const assert = require('node:assert/strict');
const { ServiceClient } = require('../../nodes/core/service-client.js');
const { DeviceClient } = require('../../nodes/core/device-client.js');
const { startHub, waitFor } = require('../support/flows');

const LIFETIME_S = 3;
const RUN_MS = 10_000;

for (const transport of ['mqtt', 'amqp']) {
  test(`${transport}: ${LIFETIME_S} s tokens over ${RUN_MS / 1000} s of traffic`, { timeout: 60_000 }, async () => {
    const hub = await startHub({ devices: ['renew'] });
    const key = /SharedAccessKey=([^;]+)/.exec(hub.deviceConnectionString('renew'))[1];
    const owner = /SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1];
    const got = new Set();
    const states = [];
    const dev = new DeviceClient({
      hostName: 'localhost', connectHost: '127.0.0.1', port: transport === 'mqtt' ? hub.ports.mqtts : hub.ports.amqps, ca: hub.caPem,
      deviceId: 'renew', transport, credentials: { sharedAccessKey: key }, tokenLifetimeSec: LIFETIME_S, retry: { initialDelayMs: 100 },
    });
    dev.on('status', (ev) => states.push(ev.state));
    dev.on('message', (m) => got.add(m.messageId));
    dev.open();
    const svc = new ServiceClient({ hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.amqps, ca: hub.caPem, sharedAccessKeyName: 'iothubowner', sharedAccessKey: owner, tokenLifetimeSec: LIFETIME_S });
    const svcStates = [];
    svc.on('status', (ev) => svcStates.push(ev.state));
    svc.open();
    let sent = 0;
    const started = Date.now();
    try {
      while (Date.now() - started < RUN_MS) {
        await svc.send('renew', { body: Buffer.from('x'), messageId: `m${sent}`, properties: {} });
        sent++;
        await new Promise((r) => setTimeout(r, 20));
      }
      await waitFor(() => got.size === sent, 'every message received', 10_000);
      assert.equal(got.size, sent);
      const connects = states.filter((s) => s === 'connected').length;
      // MQTT renews by reconnecting (the token is the CONNECT password); AMQP puts the new token on $cbs.
      if (transport === 'mqtt') assert.ok(connects >= 3, `the device renewed its token ${connects - 1} times`);
      else assert.equal(connects, 1, 'AMQP renewed on $cbs without reconnecting');
      assert.ok(!states.some((s) => s === 'unauthorized' || s === 'error'), `device states: ${[...new Set(states)]}`);
      assert.deepEqual([...new Set(svcStates)], ['connecting', 'connected'], 'the back end renewed on $cbs without reconnecting');
      console.log(`# ${transport}: sent ${sent}, received ${got.size}, device connections ${connects}`);
    } finally {
      await svc.close();
      await dev.close();
      await hub.stop();
    }
  });
}

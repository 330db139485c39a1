'use strict';
// Tiers in the local hub: IoT Hub's C2D send throttle (S1: 100 per minute per unit) refuses what is over it as IoT Hub
// does (the official azure-iothub client sees its ThrottlingError), and a c2d send node backs off and retries throttled
// sends within its give-up time, showing "throttled", so nothing is lost and the rate stays within the limit.
const test = require('node:test');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const assert = require('node:assert/strict');
const { Client: ServiceClient } = require('azure-iothub');
const { Message, NoRetry } = require('azure-iot-common');
// azure-iothub maps AMQP conditions with its own copy of the common errors (dist/common-amqp/amqp_common_errors.js).
const iothubErrors = require('azure-iothub/dist/common-core/errors');
const { helper, nodeModules, startHub, configNode, waitFor, root } = require('../support/flows');
const { connectionSettings } = require('../../nodes/node-settings.js');

test('tier S1, 1 unit: the official service SDK gets ThrottlingError on the 101st send within a minute', async () => {
  const hub = await startHub({ tier: 'S1', units: 1, devices: ['a', 'b', 'c'] });
  const svc = ServiceClient.fromConnectionString(hub.hubConnectionString);
  // The SDK would retry a throttled send itself; without retries it shows what the hub answered.
  svc.setRetryPolicy(new NoRetry());
  try {
    await svc.open();
    // 100 sends in the minute, 50 to each of two devices (a device's queue holds 50); the first alone (PROTOCOL.md P5).
    await svc.send('a', new Message('0'));
    await Promise.all(Array.from({ length: 99 }, (_, i) => svc.send(i < 49 ? 'a' : 'b', new Message(String(i + 1)))));
    assert.equal(hub.queueLength('a') + hub.queueLength('b'), 100);
    const err = await svc.send('c', new Message('101')).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(
      err instanceof iothubErrors.ThrottlingError,
      `ThrottlingError, got ${err?.constructor?.name}: ${err?.message}`,
    );
    assert.equal(hub.queueLength('c'), 0, 'the refused message was not enqueued');
  } finally {
    await svc.close();
    await hub.stop();
  }
});

test('the tier is checked: a clear error for a bad tier or unit count', async () => {
  await assert.rejects(startHub({ tier: 'S9' }), /tier "S9" is not one of F1, S1, S2, S3/);
  await assert.rejects(startHub({ tier: 'F1', units: 2 }), /units must be a whole number from 1 to 1 for tier F1/);
});

test('the command line and the config node carry the tier', () => {
  const cli = (args) =>
    spawnSync(process.execPath, [path.join(root, 'nodes', 'localhub', 'cli.js'), ...args], {
      encoding: 'utf8',
      timeout: 30000,
    });
  const bad = cli(['--tier', 'S9']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /tier "S9" is not one of F1, S1, S2, S3/);
  const many = cli(['--tier', 'S3', '--units', '11']);
  assert.equal(many.status, 2);
  assert.match(many.stderr, /units must be a whole number from 1 to 10 for tier S3/);
  const alone = cli(['--units', '2']);
  assert.equal(alone.status, 2);
  assert.match(alone.stderr, /--units needs --tier/);
  // The config node's local hub settings as the editor saves them; none: unthrottled.
  assert.deepEqual(
    connectionSettings({ id: 'c', type: 'iothub-connection', mode: 'local', localHub: { tier: 'S1', units: '2' } })
      .localHub,
    { mqttsPort: undefined, amqpsPort: undefined, httpsPort: undefined, dataDir: undefined, tier: 'S1', units: 2 },
  );
  const none = connectionSettings({ id: 'c', type: 'iothub-connection', mode: 'local', localHub: { tier: '' } });
  assert.equal(none.localHub.tier, undefined);
});

// 150 sends span two throttle minutes (about 65 s); the acceptance, 300 (about 130 s), with TIER_SENDS=300.
const SENDS = Number(process.env.TIER_SENDS || 150);

test(
  `c2d send on tier S1, 1 unit: ${SENDS} tracked sends all delivered, within 100 per minute, status throttled`,
  { timeout: 300_000 },
  async () => {
    const ids = ['t0', 't1', 't2', 't3', 't4', 't5'];
    const hub = await startHub({ tier: 'S1', units: 1, devices: ids });
    await helper.startServer();
    try {
      const { node: cfg, credentials } = configNode(hub);
      const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
      await helper.load(
        nodeModules,
        [
          { id: 'tab', type: 'tab' },
          cfg,
          // The six devices receive and complete: at most 300 messages, 50 each, so no queue is ever over IoT Hub's 50.
          at({
            id: 'recv',
            type: 'iothub-device-receive',
            connection: 'cfg',
            deviceId: ids.join(' '),
            output: 'string',
            settle: 'auto',
            wires: [['got']],
          }),
          at({
            id: 'send',
            type: 'iothub-c2d-send',
            connection: 'cfg',
            deviceId: '',
            deviceIdType: 'str',
            ack: 'full',
            ttl: '',
            trackDelivery: true,
            trackTimeout: 280,
            mappings: [],
            wires: [['tracked']],
          }),
          at({ id: 'catch', type: 'catch', scope: null, uncaught: false, wires: [['caught']] }),
          at({ id: 'got', type: 'helper' }),
          at({ id: 'tracked', type: 'helper' }),
          at({ id: 'caught', type: 'helper' }),
        ],
        credentials,
      );
      const send = helper.getNode('send');
      const got = [];
      const tracked = [];
      const caught = [];
      helper.getNode('got').on('input', (m) => got.push({ at: Date.now(), n: m.payload }));
      helper.getNode('tracked').on('input', (m) => tracked.push(m));
      helper.getNode('caught').on('input', (m) => caught.push(m));
      await waitFor(() => ids.every((id) => hub.isDeviceConnected(id)), 'six devices connected', 30000);

      const started = Date.now();
      for (let i = 0; i < SENDS; i++) send.receive({ payload: String(i), deviceId: ids[i % 6] });
      await waitFor(() => tracked.length + caught.length >= SENDS, `${SENDS} outcomes`, 270_000);
      const took = (Date.now() - started) / 1000;

      assert.deepEqual(
        caught.map((m) => m.error.message),
        [],
        'nothing failed',
      );
      assert.equal(tracked.filter((m) => m.delivery === 'delivered').length, SENDS, `all ${SENDS} delivered`);
      assert.equal(new Set(got.map((g) => g.n)).size, SENDS, 'each message arrived');
      // The measured rate: no 60 s window holds more than 100 arrivals (IoT Hub's 100/min/unit for S1).
      const times = got.map((g) => g.at).sort((a, b) => a - b);
      let most = 0;
      for (let i = 0, j = 0; i < times.length; i++) {
        while (times[i] - times[j] >= 60_000) j++;
        most = Math.max(most, i - j + 1);
      }
      assert.ok(most <= 100, `at most 100 in any minute, measured ${most}`);
      assert.ok(
        send.status.args.some((a) => a[0].text === 'iothub-c2d-send.status.throttled'),
        'the status showed throttled',
      );
      const last = send.status.lastCall.args[0];
      assert.notEqual(last.text, 'iothub-c2d-send.status.throttled', 'and cleared once through');
      // Printed for the README: the whole run and the busiest minute.
      console.log(
        `# tier S1 x1: ${SENDS} tracked sends delivered in ${took.toFixed(1)} s; busiest 60 s window: ${most} messages`,
      );
    } finally {
      await helper.unload().catch(() => undefined);
      await helper.stopServer();
      await hub.stop();
    }
  },
);

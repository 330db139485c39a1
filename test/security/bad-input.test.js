'use strict';
// Hostile input through the nodes: property names and values, payloads, device ids. Each case ends either delivered
// exactly (the device receive node outputs the same name and value) or failed to the Catch node with an error naming
// the field; nothing is dropped, nothing crashes.
const test = require('node:test');
const assert = require('node:assert/strict');
const { helper, nodeModules, startHub, configNode, waitFor } = require('../support/flows');

const NAMES = [
  'a & b = c',
  '%',
  '%25',
  '+',
  '#',
  '/',
  ' padded ',
  'é',
  '漢字',
  '🙂',
  '$.mid',
  '$.cid',
  '$.to',
  'message-id',
  'iothub-ack',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'x'.repeat(1000),
  'a\u0000b',
  'line\nbreak',
  'quote"\'',
  '<script>',
  'a;b',
  '?x=1&y=2',
  'messageId',
  'correlationId',
];
const VALUES = [
  '',
  ' ',
  '%00',
  '\u0000',
  '&=;',
  'é漢字🙂',
  'x'.repeat(5000),
  '<b>',
  '"\'',
  '\r\n',
  0,
  -1.5,
  true,
  false,
  1e21,
  'a+b c',
];
const BAD_VALUES = [null, undefined, NaN, Infinity, { a: 1 }, [1], () => 1, Symbol('s')];

function flowFor(hub, sendNodes) {
  const mq = configNode(hub);
  const am = configNode(hub, { id: 'cfgA', deviceTransport: 'amqp' });
  const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
  return {
    credentials: { cfg: mq.credentials.cfg, cfgA: am.credentials.cfg },
    flow: [
      { id: 'tab', type: 'tab' },
      mq.node,
      am.node,
      at({
        id: 'rm',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: 'hm',
        output: 'string',
        settle: 'auto',
        wires: [['out']],
      }),
      at({
        id: 'ra',
        type: 'iothub-device-receive',
        connection: 'cfgA',
        deviceId: 'ha',
        output: 'string',
        settle: 'auto',
        wires: [['out']],
      }),
      ...sendNodes.map((n) =>
        at({
          type: 'iothub-c2d-send',
          connection: 'cfg',
          deviceId: '',
          deviceIdType: 'str',
          ack: 'none',
          ttl: '',
          trackDelivery: false,
          wires: [[]],
          ...n,
        }),
      ),
      at({ id: 'catch', type: 'catch', scope: null, uncaught: false, wires: [['caught']] }),
      at({ id: 'out', type: 'helper' }),
      at({ id: 'caught', type: 'helper' }),
    ],
  };
}

test(
  'hostile property names and values: delivered exactly over MQTT and AMQP, or a clear error on the Catch node',
  { timeout: 60_000 },
  async () => {
    const hub = await startHub({ devices: ['hm', 'ha'] });
    await helper.startServer();
    const sendNodes = NAMES.map((name, i) => ({
      id: `s${i}`,
      mappings: [
        { name, value: 'v', valueType: 'msg' },
        { name: 'messageId', value: 'mid', valueType: 'msg' },
      ],
    }));
    const { flow, credentials } = flowFor(hub, sendNodes);
    try {
      await helper.load(nodeModules, flow, credentials);
      await waitFor(() => hub.isDeviceConnected('hm') && hub.isDeviceConnected('ha'), 'devices connected');
      const out = new Map();
      const caught = new Map();
      helper.getNode('out').on('input', (m) => out.set(`${m.deviceId}/${m.messageId}`, m));
      helper.getNode('caught').on('input', (m) => caught.set(`${m.deviceId}/${m.mid}`, m.error));
      const cases = [];
      NAMES.forEach((name, i) => {
        const v = VALUES[i % VALUES.length];
        for (const deviceId of ['hm', 'ha']) {
          const mid = `case-${i}`;
          cases.push({ key: `${deviceId}/${mid}`, name, v });
          helper.getNode(`s${i}`).receive({ payload: `p${i}`, deviceId, v, mid });
        }
      });
      await waitFor(
        () => cases.every((c) => out.has(c.key) || caught.has(c.key)),
        'every case delivered or caught',
        20_000,
      ).catch((err) => {
        const missing = cases
          .filter((c) => !out.has(c.key) && !caught.has(c.key))
          .map((c) => `${c.key} ${JSON.stringify(c.name.slice(0, 20))}`);
        throw new Error(
          `${err.message}: neither delivered nor caught: ${missing.join(', ')}; outputs ${[...out.keys()].slice(0, 80)}`,
        );
      });
      const table = [];
      for (const c of cases) {
        const shown = JSON.stringify(c.name.length > 20 ? `${c.name.slice(0, 20)}…` : c.name);
        if (caught.has(c.key)) {
          const e = caught.get(c.key);
          table.push(`${c.key} ${shown}: refused: ${e.message.slice(0, 90)}`);
          assert.match(e.message, /row 1/, `${shown}: the error names the row`);
          assert.match(e.source?.id ?? '', /^s\d+$/, 'the error comes from the send node');
          continue;
        }
        const m = out.get(c.key);
        const name = c.name.trim();
        table.push(`${c.key} ${shown}: delivered`);
        if (name === 'messageId' || name === 'correlationId') continue;
        assert.ok(
          Object.prototype.hasOwnProperty.call(m.properties, name),
          `${c.key} ${shown}: the property arrived under its own name (got ${Object.keys(m.properties).map((k) => k.slice(0, 20))})`,
        );
        assert.equal(m.properties[name], String(c.v), `${c.key} ${shown}: the value arrived exactly`);
        assert.equal(m.messageId, c.key.split('/')[1], `${c.key} ${shown}: the message id was not overwritten`);
        assert.equal(m.payload, `p${c.key.split('-')[1]}`);
      }
      console.log(
        `# ${cases.length} hostile names: ${cases.filter((c) => out.has(c.key)).length} delivered exactly, ${cases.filter((c) => caught.has(c.key)).length} refused with an error\n# ${table.join('\n# ')}`,
      );
    } finally {
      await helper.unload().catch(() => undefined);
      await helper.stopServer();
      await hub.stop();
    }
  },
);

test(
  'bad values, payloads and device ids: a clear error naming the field, or delivered exactly; nothing crashes',
  { timeout: 60_000 },
  async () => {
    const hub = await startHub();
    await helper.startServer();
    const ODD_IDS = ['a+b#c%d', "x:y;z$'(1)@=,!*?%41"];
    const BAD_IDS = ['a/b', 'é', '漢字', 'a b', 'x'.repeat(129), 'in\tside', 'a\u0000'];
    const { flow, credentials } = flowFor(hub, [
      { id: 'sv', mappings: [{ name: 'p', value: 'v', valueType: 'msg' }] },
      { id: 'sp', mappings: [] },
    ]);
    const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
    ODD_IDS.forEach((deviceId, i) =>
      flow.push(
        at({
          id: `odd${i}`,
          type: 'iothub-device-receive',
          connection: 'cfgA',
          deviceId,
          output: 'string',
          settle: 'auto',
          wires: [['out']],
        }),
      ),
    );
    flow.push(
      at({
        id: 'mqttHash',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: 'm#1',
        output: 'string',
        settle: 'auto',
        wires: [['out']],
      }),
    );
    // % is legal in an MQTT device's id too (the hub once decoded the user name and refused "p%41q" as "pAq").
    const MQTT_ODD_IDS = ['p%41q', 'pct%', 'x:y;z$(1)@=,!*?'];
    MQTT_ODD_IDS.forEach((deviceId, i) =>
      flow.push(
        at({
          id: `oddMqtt${i}`,
          type: 'iothub-device-receive',
          connection: 'cfg',
          deviceId,
          output: 'string',
          settle: 'auto',
          wires: [['out']],
        }),
      ),
    );
    const ODD_ALL = [...ODD_IDS, ...MQTT_ODD_IDS];
    try {
      await helper.load(nodeModules, flow, credentials);
      const statuses = [];
      helper.getNode('mqttHash').on('call:status', (c) => statuses.push(c.args[0]));
      const warnings = [];
      helper.getNode('mqttHash').on('call:error', (c) => warnings.push(String(c.args[0])));
      await waitFor(
        () => ODD_ALL.every((id) => hub.isDeviceConnected(id)),
        'devices with odd ids connected over AMQP and MQTT',
      );
      const out = [];
      const caught = [];
      helper.getNode('out').on('input', (m) => out.push(m));
      helper.getNode('caught').on('input', (m) => caught.push(m));
      const circular = { a: 1 };
      circular.self = circular;
      const cases = [
        ...BAD_VALUES.map((v, i) => ({
          node: 'sv',
          msg: { payload: 'x', deviceId: 'ha', v, tag: `value ${i}` },
          field: /mappings\[1\]/,
          text: /row 1 "p": its value/,
        })),
        {
          node: 'sp',
          msg: { payload: 'x'.repeat(65 * 1024), deviceId: 'ha', tag: '65 KB string' },
          field: /payload/,
          text: /at most 65536/,
        },
        {
          node: 'sp',
          msg: { payload: Buffer.alloc(1024 * 1024), deviceId: 'ha', tag: '1 MB Buffer' },
          field: /payload/,
          text: /at most 65536/,
        },
        {
          node: 'sp',
          msg: { payload: circular, deviceId: 'ha', tag: 'circular object' },
          field: /payload/,
          text: /cannot be serialised to JSON/,
        },
        {
          node: 'sp',
          msg: { payload: { n: 10n }, deviceId: 'ha', tag: 'BigInt inside' },
          field: /payload/,
          text: /cannot be serialised to JSON/,
        },
        {
          node: 'sp',
          msg: { payload: Symbol('s'), deviceId: 'ha', tag: 'symbol payload' },
          field: /payload/,
          text: /cannot be sent/,
        },
        {
          node: 'sp',
          msg: { payload: null, deviceId: 'ha', tag: 'null payload' },
          field: /payload/,
          text: /msg.payload is empty/,
        },
        ...BAD_IDS.map((deviceId) => ({
          node: 'sp',
          msg: { payload: 'x', deviceId, tag: `device id ${JSON.stringify(deviceId.slice(0, 10))}` },
          field: /deviceId/,
          text: /IoT Hub allows 1 to 128 ASCII/,
        })),
      ];
      for (const c of cases) helper.getNode(c.node).receive(c.msg);
      for (const [i, deviceId] of ODD_ALL.entries())
        helper.getNode('sp').receive({ payload: `to ${i}`, deviceId, tag: `odd id ${i}` });
      await waitFor(
        () => caught.length === cases.length && out.length === ODD_ALL.length,
        'every case caught or delivered',
        15_000,
      ).catch((err) => {
        throw new Error(`${err.message}: caught ${caught.map((m) => m.tag)}; delivered ${out.map((m) => m.deviceId)}`);
      });
      const rows = [];
      for (const c of cases) {
        const m = caught.find((x) => x.tag === c.msg.tag);
        assert.ok(m, `${c.tag}: on the Catch node`);
        assert.match(m.error.message, c.text, `${c.msg.tag}: ${m.error.message}`);
        rows.push(`${c.msg.tag}: ${m.error.message.slice(0, 110)}`);
      }
      // Ids with + # % and friends are legal in IoT Hub: they arrive, to exactly that device, undecoded.
      assert.deepEqual(
        out.map((m) => `${m.deviceId}=${m.payload}`).sort(),
        ODD_ALL.map((id, i) => `${id}=to ${i}`).sort(),
      );
      // An MQTT device cannot subscribe with # or + in its id: the node says so instead of failing quietly.
      await waitFor(() => statuses.some((s) => s.fill === 'red'), 'the MQTT node with # in its id shows a red status');
      assert.ok(
        warnings.some((w) => /holds # or \+.*AMQP/.test(w)),
        `the MQTT node explains: ${warnings}`,
      );
      rows.push(
        `MQTT device id "m#1": status ${JSON.stringify(statuses.find((s) => s.fill === 'red').text)}, ${warnings[0].slice(0, 100)}`,
      );
      console.log(
        `# ${cases.length} refused with an error, ${out.length} odd but legal ids delivered\n# ${rows.join('\n# ')}`,
      );
      const text = JSON.stringify(caught.map((m) => m.error.message)) + warnings.join('');
      assert.ok(!text.includes(/SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1]), 'no key in any error');
    } finally {
      await helper.unload().catch(() => undefined);
      await helper.stopServer();
      await hub.stop();
    }
  },
);

'use strict';
// Feedback the hub cannot have meant: bodies that are not JSON, not an array, not records; and a feedback link the hub
// detaches. The local hub only writes good feedback and detaches a link only when its token expires, so a small rhea
// server plays the hub's feedback endpoint here (CBS and the feedback link, nothing more).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const rhea = require('rhea');
const { helper, nodeModules, waitFor } = require('../support/flows');
const { ensureTlsMaterial } = require('../../nodes/localhub/tls.js');

const GOOD = JSON.stringify([
  {
    originalMessageId: 'm1',
    deviceId: 'd1',
    statusCode: 'Success',
    description: 'Success',
    enqueuedTimeUtc: new Date().toISOString(),
  },
]);
const BAD = [
  'not json',
  '{"statusCode":"Success"}',
  '"a string"',
  '[1]',
  '[null]',
  '[{"statusCode":"Weird"}]',
  '',
  '\u0000\u00ff',
];

/** bodies: what each feedback link gets; detachFirst: the first feedback link is detached (amqp:link:detach-forced) at once. */
async function fakeFeedbackHub(material, { bodies = [...BAD, GOOD], detachFirst = false } = {}) {
  const container = rhea.create_container({ id: 'fake-hub' });
  container.sasl_server_mechanisms.enable_anonymous();
  container.sasl_server_mechanisms.MSSBCBS = () => ({ start: () => undefined, outcome: true, step: () => undefined });
  const outcomes = [];
  const feedbackLinks = [];
  let cbsReply;
  container.on('sender_open', (ctx) => {
    const address = ctx.sender.source?.address;
    if (address === '$cbs') cbsReply = ctx.sender;
    if (address?.toLowerCase() === '/messages/servicebound/feedback') {
      feedbackLinks.push(ctx.sender);
      if (detachFirst && feedbackLinks.length === 1) {
        ctx.sender.close({ condition: 'amqp:link:detach-forced', description: 'the link was moved' });
        return;
      }
      for (const body of bodies) {
        const d = ctx.sender.send({
          body: rhea.message.data_section(Buffer.from(body, 'latin1')),
          content_type: 'application/vnd.microsoft.iothub.feedback.json',
        });
        d.body = body;
      }
    }
  });
  container.on('message', (ctx) => {
    if (ctx.receiver.target?.address === '$cbs') {
      cbsReply.send({
        correlation_id: ctx.message.message_id,
        application_properties: { 'status-code': 200, 'status-description': 'OK' },
      });
    }
  });
  for (const kind of ['accepted', 'rejected', 'released', 'modified'])
    container.on(kind, (ctx) => {
      if (ctx.delivery.body !== undefined) outcomes.push({ body: ctx.delivery.body, kind });
    });
  const server = container.listen({
    port: 0,
    host: '127.0.0.1',
    transport: 'tls',
    key: material.keyPem,
    cert: material.certPem,
  });
  await new Promise((r) => server.once('listening', r));
  return { port: server.address().port, outcomes, feedbackLinks, close: () => new Promise((r) => server.close(r)) };
}

/** A fake hub and a Node-RED runtime with a feedback node wired to `out` and a Catch node to `caught`; testBody(hub, seen) runs inside. */
async function withFeedbackFlow(hubOptions, testBody) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-fakehub-'));
  const material = ensureTlsMaterial(dir, ['localhost']);
  const hub = await fakeFeedbackHub(material, hubOptions);
  await helper.startServer();
  const key = Buffer.alloc(32, 7).toString('base64');
  const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
  const flow = [
    { id: 'tab', type: 'tab' },
    {
      id: 'cfg',
      type: 'iothub-connection',
      mode: 'azure',
      deviceTransport: 'mqtt',
      serviceTransport: 'amqp',
      amqpPort: hub.port,
    },
    at({ id: 'fb', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [['out']] }),
    at({ id: 'catch', type: 'catch', scope: null, uncaught: false, wires: [['caught']] }),
    at({ id: 'out', type: 'helper' }),
    at({ id: 'caught', type: 'helper' }),
  ];
  try {
    await helper.load(nodeModules, flow, {
      cfg: {
        connectionString: `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`,
        ca: material.caPem,
      },
    });
    const seen = { out: [], caught: [], statuses: [] };
    helper.getNode('out').on('input', (m) => seen.out.push(m));
    helper.getNode('caught').on('input', (m) => seen.caught.push(m));
    helper.getNode('fb').on('call:status', (c) => seen.statuses.push(c.args[0].text));
    await testBody(hub, seen);
  } finally {
    await helper.unload().catch(() => undefined);
    await helper.stopServer();
    await hub.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test(
  'feedback bodies that are not JSON or not an array: each on the Catch node with its body, rejected; the good one still out',
  { timeout: 30_000 },
  async () => {
    await withFeedbackFlow({}, async (hub, { out, caught, statuses }) => {
      await waitFor(() => hub.outcomes.length === BAD.length + 1, 'every feedback message settled', 15_000).catch(
        (e) => {
          throw new Error(`${e.message}: statuses ${statuses}; outcomes ${JSON.stringify(hub.outcomes)}`);
        },
      );
      await waitFor(() => caught.length === BAD.length && out.length === 1, 'errors caught and the good record out');
      assert.deepEqual(
        out.map((m) => `${m.payload.originalMessageId}:${m.payload.statusCode}`),
        ['m1:Success'],
      );
      assert.deepEqual(
        hub.outcomes.map((o) => `${o.kind}`),
        [...BAD.map(() => 'rejected'), 'accepted'],
        'bad ones rejected (dead-lettered), the good one accepted',
      );
      for (const [i, m] of caught.entries()) {
        // (The test runtime shows message keys: the English text is in the locale file.)
        assert.match(m.error.message, /unreadable.*: feedback: /i, m.error.message);
        assert.equal(m.payload, Buffer.from(BAD[i], 'latin1').toString('utf8'), 'the body as it came');
      }
      console.log(
        `# ${BAD.length} unreadable feedback bodies: ${caught.length} on the Catch node, ${hub.outcomes.filter((o) => o.kind === 'rejected').length} rejected; 1 good record out\n# ${caught.map((m) => `${JSON.stringify(m.payload).slice(0, 30)}: ${m.error.message}`).join('\n# ')}`,
      );
    });
  },
);

test('a feedback link the hub detaches is attached again: feedback keeps coming', { timeout: 30_000 }, async () => {
  await withFeedbackFlow({ bodies: [GOOD], detachFirst: true }, async (hub, { out, caught, statuses }) => {
    await waitFor(() => out.length === 1, 'the record sent on the second feedback link', 15_000).catch((e) => {
      throw new Error(`${e.message}: ${hub.feedbackLinks.length} feedback links; statuses ${statuses}`);
    });
    assert.equal(hub.feedbackLinks.length, 2, 'detached once, attached again once');
    assert.equal(out[0].payload.originalMessageId, 'm1');
    assert.deepEqual(caught, [], 'no error on the Catch node');
    console.log(
      `# feedback link detached by the hub: attached again (${hub.feedbackLinks.length} attaches), statuses ${[...new Set(statuses)].join(', ')}`,
    );
  });
});

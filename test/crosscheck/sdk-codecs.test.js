'use strict';
// Our codecs against the official packages' own code: the SAS signer, the MQTT topic parser, the AMQP encoder.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const rhea = require('rhea');
const { SharedAccessSignature, encodeUriComponentStrict, Message } = require('azure-iot-common');
const { Mqtt } = require('azure-iot-device-mqtt');
const { AmqpMessage } = require('azure-iot-amqp-base');
const { createSasToken, parseSasToken, verifySasToken } = require('../../nodes/core/sas.js');
const { c2dTopic } = require('../../nodes/core/property-bag.js');
const { toAmqpMessage, encodeC2DMessage } = require('../../nodes/core/amqp-codec.js');

const KEY = crypto.randomBytes(32).toString('base64');
const SE = 4102444800;

test("SAS: our tokens equal the SDK signer's, and each side verifies the other", () => {
  for (const [resource, keyName] of [
    ['hub.azure-devices.net/devices/d1', undefined],
    ['hub.azure-devices.net/devices/dev (1) é!*', undefined],
    ['hub.azure-devices.net', 'service'],
    ['hub.azure-devices.net/devices/sim-7', 'iothubowner'],
    ['localhost:8883/devices/x', 'device'],
  ]) {
    const sdk = SharedAccessSignature.create(encodeUriComponentStrict(resource), keyName, KEY, SE).toString();
    const ours = createSasToken({ resourceUri: resource, key: KEY, keyName, expiresAt: SE });
    assert.equal(ours, sdk, resource);
    assert.ok(verifySasToken(sdk, KEY, SE - 10), 'we verify the SDK token');
    // The SDK has no verifier: re-sign our parsed fields with its signer and compare signatures.
    const p = parseSasToken(ours);
    const resigned = SharedAccessSignature.create(p.sr, p.skn, KEY, p.se);
    assert.equal(decodeURIComponent(resigned.sig), p.sig, 'the SDK signer produces our signature');
    const parsed = SharedAccessSignature.parse(ours, ['sr', 'sig', 'se']);
    assert.equal(parsed.sr, p.sr);
    assert.equal(String(parsed.se), String(SE));
  }
});

test('MQTT: topics we write decode in azure-iot-device-mqtt to the same ids, content type and properties', () => {
  const cases = [
    { messageId: 'm1', correlationId: 'c1', contentType: 'application/json', properties: { a: '1' } },
    {
      messageId: '6f1c3e2a-8b4d-4c5e-9f60-123456789abc',
      correlationId: 'c & = % + # / $',
      contentType: 'text/plain; charset=UTF-8',
      properties: { 'k & =': 'v % + # / $ é 漢字 🙂', 'with space': 'a b' },
    },
    { messageId: 'x', properties: { empty: '' } },
  ];
  for (const c of cases) {
    const m = { body: Buffer.from('hi'), ack: 'full', ...c };
    const topic = c2dTopic('dev-1', m);
    let emitted;
    // The SDK's own C2D parser, run on our topic (it is a method of the transport; it needs only emit()).
    Mqtt.prototype._onC2DMessage.call(
      {
        emit: (_e, msg) => {
          emitted = msg;
        },
        _extractPropertiesFromTopicPart: Mqtt.prototype._extractPropertiesFromTopicPart,
      },
      topic,
      m.body,
    );
    assert.equal(emitted.messageId, c.messageId);
    // The SDK's Message starts with empty strings where nothing was sent.
    assert.equal(emitted.correlationId || undefined, c.correlationId);
    assert.equal(emitted.contentType || undefined, c.contentType);
    const props = Object.fromEntries(emitted.properties.propertyList.map((p) => [p.key, p.value]));
    assert.deepEqual(
      props,
      { ...c.properties, 'iothub-ack': 'full' },
      'the Node SDK keeps iothub-ack as an application property',
    );
  }
});

test("AMQP: our encoding of a C2D message matches azure-iothub's, field by field and byte by byte", () => {
  for (const id of ['6f1c3e2a-8b4d-4c5e-9f60-123456789abc', 'order-17']) {
    const sdkMsg = new Message(Buffer.from('{"a":1}'));
    sdkMsg.messageId = id;
    sdkMsg.correlationId = id;
    sdkMsg.contentType = 'application/json';
    sdkMsg.contentEncoding = 'utf-8';
    sdkMsg.expiryTimeUtc = 1900000000000;
    sdkMsg.ack = 'full';
    sdkMsg.properties.add('p one', 'v & é');
    const sdk = AmqpMessage.fromMessage(sdkMsg);
    sdk.to = '/devices/' + encodeURIComponent('dev 1') + '/messages/devicebound';
    const ours = toAmqpMessage('dev 1', {
      body: Buffer.from('{"a":1}'),
      messageId: id,
      correlationId: id,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      expiryTimeUtc: 1900000000000,
      ack: 'full',
      properties: { 'p one': 'v & é' },
    });
    for (const f of ['to', 'content_type', 'content_encoding', 'absolute_expiry_time', 'application_properties'])
      assert.deepEqual(ours[f], sdk[f], f);
    assert.deepEqual(ours.message_id, sdk.message_id, 'message_id (uuid for UUID-shaped ids)');
    assert.deepEqual(ours.correlation_id, sdk.correlation_id);
    assert.equal(Buffer.isBuffer(ours.message_id), id.includes('-4c5e-'), 'UUID ids travel as AMQP uuid');
    const plain = (m) => ({ ...m });
    assert.deepEqual(rhea.message.encode(plain(ours)), rhea.message.encode(plain(sdk)), 'identical bytes on the wire');
  }
});

test('AMQP: the direct encoder writes exactly the bytes rhea writes, over 3,000 generated messages and the edges', () => {
  // Seeded, so a failure names a message that can be made again.
  let seed = 17;
  const rnd = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const texts = [
    '',
    'a',
    'é',
    '漢字🙂',
    'x'.repeat(254),
    'y'.repeat(255),
    'z'.repeat(256),
    'ü'.repeat(128),
    'k & = % + # / $',
    'x'.repeat(70000),
  ];
  const text = () => (rnd(4) === 0 ? texts[rnd(texts.length)] : crypto.randomBytes(rnd(40)).toString('base64'));
  const maybe = (f) => (rnd(3) === 0 ? undefined : f());
  const messages = [];
  for (let i = 0; i < 3000; i++) {
    const properties = {};
    for (let j = rnd(5); j > 0; j--) properties[text()] = text();
    const m = {
      body: crypto.randomBytes([0, 1, 255, 256, 65535][rnd(5)]),
      messageId: maybe(() => (rnd(2) ? crypto.randomUUID() : text())),
      correlationId: maybe(() => (rnd(3) === 0 ? crypto.randomUUID().toUpperCase() : text())),
      userId: maybe(text),
      to: rnd(6) === 0 ? text() : undefined,
      contentType: maybe(() => ['application/json', 'text/plain; charset=utf-8', '', 'é/x', 's'.repeat(300)][rnd(5)]),
      contentEncoding: maybe(() => ['utf-8', '', 'x\u0001'][rnd(3)]),
      expiryTimeUtc: maybe(() => [Date.now() + 60_000, 0, 1.5, 8.64e15][rnd(4)]),
      ack: maybe(() => ['none', 'positive', 'negative', 'full'][rnd(4)]),
      properties,
    };
    for (const k of Object.keys(m)) if (m[k] === undefined) delete m[k];
    messages.push(m);
  }
  messages.push(
    { body: Buffer.alloc(0), properties: { __proto__: 'p' } },
    { body: Buffer.from('x'), properties: { n: 1 } },
  );
  let direct = 0;
  for (const [i, m] of messages.entries()) {
    const device = ['d1', 'dev (1)', 'a+b#c%d'][i % 3];
    const expected = rhea.message.encode(toAmqpMessage(device, m));
    const ours = encodeC2DMessage(device, m);
    assert.ok(ours.equals(expected), `message ${i}: ${JSON.stringify({ ...m, body: m.body.length })}`);
    // And rhea reads it back as the message it came from.
    const back = rhea.message.decode(ours);
    assert.equal(back.to, m.to ?? `/devices/${encodeURIComponent(device)}/messages/devicebound`);
    assert.ok(back.body.content.equals(m.body));
    if (!(m.expiryTimeUtc % 1) && !/[^\x20-\x7e]/.test((m.contentType ?? '') + (m.contentEncoding ?? ''))) direct++;
  }
  // Most messages take the direct path (the rest, rhea's, are compared all the same).
  assert.ok(direct > messages.length / 2, `${direct} of ${messages.length} encoded directly`);
});

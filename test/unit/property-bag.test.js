'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const {
  encodePropertyBag,
  decodePropertyBag,
  c2dTopic,
  parseC2DTopic,
  decodeC2DPublish,
  c2dSubscription,
} = require('../../nodes/core/property-bag.js');

const HOSTILE = [
  '% & = + # / $',
  ' ',
  'é漢字🙂',
  '',
  'a=b&c=d',
  '%24.mid',
  '100%',
  '+plus+',
  '#hash',
  'slash/es',
  '$dollar',
  '\u0000nul',
  'tab\tnew\nline',
];

test('the real hub example decodes', () => {
  const topic =
    'devices/my-device-1/messages/devicebound/%24.mid=84c0&%24.to=%2Fdevices%2Fmy-device-1%2Fmessages%2FdeviceBound&%24.ct=text%2Fplain%3B%20charset%3DUTF-8&iothub-ack=full';
  const m = decodeC2DPublish(topic, Buffer.from('hi'));
  assert.equal(m.messageId, '84c0');
  assert.equal(m.to, '/devices/my-device-1/messages/deviceBound');
  assert.equal(m.contentType, 'text/plain; charset=UTF-8');
  assert.equal(m.ack, 'full');
  assert.deepEqual(m.properties, {});
  assert.equal(m.systemProperties['$.mid'], '84c0');
  assert.equal(m.systemProperties['iothub-ack'], 'full');
  assert.equal(m.body.toString(), 'hi');
});

test('encoding escapes $ / & = % + # and space', () => {
  const bag = encodePropertyBag({
    body: Buffer.alloc(0),
    messageId: 'a b',
    properties: { 'k&=': 'v%+#/$' },
    ack: 'full',
  });
  assert.equal(bag, '%24.mid=a%20b&k%26%3D=v%25%2B%23%2F%24&iothub-ack=full');
});

test('hostile keys and values round-trip; system properties and ack are not application properties', () => {
  for (const v of HOSTILE) {
    const key = v || 'empty';
    const m = {
      body: Buffer.alloc(0),
      messageId: v || 'x',
      correlationId: v,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      userId: 'u',
      to: '/devices/d/messages/devicebound',
      expiryTimeUtc: Date.UTC(2030, 0, 2, 3, 4, 5, 6),
      ack: 'negative',
      properties: { [key]: v, plain: 'x' },
    };
    const topic = c2dTopic('d', m);
    assert.ok(topic.startsWith('devices/d/messages/devicebound/'));
    assert.ok(!/[ #+]/.test(topic.slice('devices/d/messages/devicebound/'.length)), topic);
    const back = decodeC2DPublish(topic, Buffer.alloc(0));
    for (const f of [
      'messageId',
      'correlationId',
      'contentType',
      'contentEncoding',
      'userId',
      'to',
      'expiryTimeUtc',
      'ack',
    ])
      assert.deepEqual(back[f], m[f], `${f} of ${JSON.stringify(v)}`);
    assert.deepEqual(back.properties, m.properties);
  }
});

test('seeded random round-trips (3000 cases)', () => {
  let seed = 42;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const alphabet = "aZ09 %&=+#/$.-_~!'()*é漢🙂\t";
  const str = (n) =>
    Array.from({ length: Math.floor(rnd() * n) }, () => [...alphabet][Math.floor(rnd() * [...alphabet].length)]).join(
      '',
    );
  for (let i = 0; i < 3000; i++) {
    const properties = {};
    for (let j = Math.floor(rnd() * 4); j > 0; j--) {
      const k = str(8);
      if (k && !k.startsWith('$.') && k !== 'iothub-ack') properties[k] = str(12);
    }
    const m = { body: Buffer.alloc(0), messageId: str(20) || 'm', properties };
    const back = decodePropertyBag(encodePropertyBag(m)).message;
    assert.equal(back.messageId, m.messageId);
    assert.deepEqual(back.properties, properties);
  }
});

test('bare keys, empty values, empty bags and a missing trailing slash', () => {
  assert.deepEqual(decodePropertyBag('bare&empty=&k=v').message.properties, { bare: '', empty: '', k: 'v' });
  assert.deepEqual(decodePropertyBag('').message, { properties: {} });
  assert.deepEqual(parseC2DTopic('devices/d/messages/devicebound'), { deviceId: 'd', bag: '' });
  assert.deepEqual(parseC2DTopic('devices/d/messages/devicebound/'), { deviceId: 'd', bag: '' });
  assert.equal(parseC2DTopic('devices/d/messages/events/'), undefined);
  const m = decodeC2DPublish('devices/d/messages/devicebound', Buffer.from('x'));
  assert.deepEqual(m.properties, {});
  assert.equal(c2dSubscription('d'), 'devices/d/messages/devicebound/#');
});

test('64 KB bodies and UUID ids pass through untouched', () => {
  const body = Buffer.alloc(64 * 1024, 7);
  const id = '6f1c3e2a-8b4d-4c5e-9f60-123456789abc';
  const m = decodeC2DPublish(c2dTopic('d', { body, messageId: id, correlationId: id, properties: {} }), body);
  assert.equal(m.body.length, 65536);
  assert.equal(m.messageId, id);
});

test('malformed percent-encoding is a typed error, not a crash', () => {
  for (const bag of ['%', 'k=%E0%A4%A', '%zz=1', 'k=%']) {
    assert.throws(
      () => decodePropertyBag(bag),
      (e) => e.code === 'PROTOCOL_ERROR',
    );
  }
  assert.throws(
    () => decodeC2DPublish('devices/d/other', Buffer.alloc(0)),
    (e) => e.code === 'PROTOCOL_ERROR',
  );
});

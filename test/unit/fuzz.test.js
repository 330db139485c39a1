'use strict';
// 100,000+ random inputs through the codecs: nothing escapes but the typed errors.
const test = require('node:test');
const assert = require('node:assert/strict');
const { decodePropertyBag, decodeC2DPublish } = require('../../nodes/core/property-bag.js');
const { parseFeedbackBody } = require('../../nodes/core/feedback.js');
const { parseConnectionString } = require('../../nodes/core/connection-string.js');
const { parseSasToken } = require('../../nodes/core/sas.js');
const { IotHubError } = require('../../nodes/core/errors.js');

let seed = 12345;
const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
const pieces = [
  '%',
  '%2',
  '%24.',
  '%zz',
  '&',
  '=',
  '$.mid',
  'iothub-ack',
  '/',
  '#',
  '+',
  ' ',
  'é',
  '🙂',
  '\u0000',
  '\ud800',
  ';',
  'HostName',
  'DeviceId',
  'SharedAccessKey',
  'SharedAccessKeyName',
  'x509',
  'true',
  'SharedAccessSignature ',
  'sr',
  'sig',
  'se',
  'skn',
  '[',
  ']',
  '{',
  '}',
  '"',
  ':',
  ',',
  'null',
  '1',
  '-1',
  'statusCode',
  'Success',
  'originalMessageId',
  'aGVsbG8=',
  'devices/d/messages/devicebound',
  'a',
  'ZZ',
  '\n',
];
const junk = (max) =>
  Array.from({ length: Math.floor(rnd() * max) }, () => pieces[Math.floor(rnd() * pieces.length)]).join('');

const codecs = {
  'property bag': (s) => decodePropertyBag(s),
  'C2D publish': (s) => decodeC2DPublish(s, Buffer.from(s)),
  'feedback body': (s) => parseFeedbackBody(Buffer.from(s)),
  'connection string': (s) => parseConnectionString(s),
  'SAS token': (s) => parseSasToken(s),
};

for (const [name, decode] of Object.entries(codecs)) {
  test(`fuzz: ${name}, 25,000 random inputs`, () => {
    let typed = 0;
    for (let i = 0; i < 25_000; i++) {
      const input = junk(24);
      try {
        decode(input);
      } catch (err) {
        assert.ok(
          err instanceof IotHubError,
          `${name} threw ${err && err.constructor.name} for ${JSON.stringify(input)}: ${err && err.message}`,
        );
        typed++;
      }
    }
    assert.ok(typed > 0, 'the fuzzer reached the error paths');
  });
}

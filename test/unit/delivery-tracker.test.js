'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { DeliveryTracker, outcomeOf } = require('../../nodes/core/delivery-tracker.js');

const rec = (id, statusCode) => ({
  originalMessageId: id,
  deviceId: 'd',
  statusCode,
  description: statusCode,
  enqueuedTimeUtc: '',
});

test('each status maps to one outcome', () => {
  assert.deepEqual(['Success', 'Expired', 'Rejected', 'DeliveryCountExceeded', 'Purged'].map(outcomeOf), [
    'delivered',
    'expired',
    'rejected',
    'deliveryCountExceeded',
    'purged',
  ]);
});

test('a record settles its message once; unknown ids are ignored', () => {
  const t = new DeliveryTracker();
  const seen = [];
  t.track('a', 60_000, (o, r) => seen.push(['a', o, r.statusCode]));
  t.track('b', 60_000, (o) => seen.push(['b', o]));
  t.handleRecords([rec('a', 'Success'), rec('zzz', 'Rejected'), rec('a', 'Rejected')]);
  assert.deepEqual(seen, [['a', 'delivered', 'Success']]);
  assert.equal(t.size, 1);
  t.forget('b');
  assert.equal(t.size, 0);
});

test('no feedback within the timeout settles as timeout, exactly once', async () => {
  const t = new DeliveryTracker(10);
  const seen = [];
  t.track('late', 20, (o) => seen.push(o));
  await new Promise((r) => setTimeout(r, 120));
  t.handleRecords([rec('late', 'Success')]);
  assert.deepEqual(seen, ['timeout']);
  assert.equal(t.close(), 0);
});

test('close drops pending messages and reports how many', () => {
  const t = new DeliveryTracker();
  t.track('x', 1000, () => assert.fail('must not settle after close'));
  t.track('y', 1000, () => assert.fail('must not settle after close'));
  assert.equal(t.close(), 2);
  t.handleRecords([rec('x', 'Success')]);
});

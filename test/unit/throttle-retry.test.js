'use strict';
// ThrottleRetry (throttled sends wait, go out one at a time, fail at their deadline) and HubActivity (feedback counts in
// time buckets, the last sends with their state).
const test = require('node:test');
const assert = require('node:assert/strict');
const { ThrottleRetry } = require('../../nodes/core/throttle-retry.js');
const { HubActivity } = require('../../nodes/core/hub-activity.js');
const { IotHubError } = require('../../nodes/core/errors.js');

const throttled = () => new IotHubError('THROTTLED', 'the hub is throttling');

/** A hub that lets `allowed` sends through, then throttles until open() is called. */
function fakeHub(allowed) {
  let left = allowed;
  let open = false;
  const accepted = [];
  let concurrent = 0;
  let most = 0;
  return {
    accepted,
    get most() {
      return most;
    },
    open() {
      open = true;
    },
    send(n) {
      concurrent++;
      most = Math.max(most, concurrent);
      return new Promise((resolve, reject) =>
        setImmediate(() => {
          concurrent--;
          if (open || left > 0) {
            left--;
            accepted.push(n);
            resolve();
          } else reject(throttled());
        }),
      );
    },
  };
}

test('throttled sends wait and all go through, in order, once the hub lets them; the state is reported', async () => {
  const hub = fakeHub(3);
  const states = [];
  const retry = new ThrottleRetry({ initialDelayMs: 5, maxDelayMs: 20, onThrottled: (on) => states.push(on) });
  const deadline = Date.now() + 10_000;
  const all = Array.from({ length: 10 }, (_, i) => retry.send(() => hub.send(i), deadline));
  // Throttled once the first refusal came back; the hub lets nothing more through until it opens.
  while (!retry.isThrottled) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(hub.accepted.length, 3, 'only what the hub allowed');
  assert.equal(retry.isThrottled, true);
  hub.open();
  await Promise.all(all);
  assert.deepEqual(hub.accepted.slice(3), [3, 4, 5, 6, 7, 8, 9], 'the waiting ones in arrival order');
  assert.deepEqual(states, [true, false]);
  assert.equal(retry.isThrottled, false);
});

test('while throttled, one probe at a time; a message still refused at its deadline fails with the hub error', async () => {
  const hub = fakeHub(0);
  const retry = new ThrottleRetry({ initialDelayMs: 5, maxDelayMs: 10 });
  const results = await Promise.allSettled(
    Array.from({ length: 5 }, (_, i) => retry.send(() => hub.send(i), Date.now() + 150)),
  );
  assert.ok(results.every((r) => r.status === 'rejected' && r.reason.code === 'THROTTLED'));
  assert.ok(hub.most <= 5, 'the first burst went out together');
  assert.equal(retry.isThrottled, false, 'nothing waits any more');
  assert.equal(retry.close(), 0);
});

test('any other error fails only its message; close() fails what waits', async () => {
  const retry = new ThrottleRetry({ initialDelayMs: 5 });
  const other = retry.send(() => Promise.reject(new IotHubError('QUEUE_FULL', 'full')), Date.now() + 1000);
  await assert.rejects(other, /full/);
  const waiting = retry.send(() => Promise.reject(throttled()), Date.now() + 60_000);
  while (!retry.isThrottled) await new Promise((r) => setTimeout(r, 5));
  assert.equal(retry.close(), 1);
  await assert.rejects(waiting, /closed while the hub was throttling/);
  await assert.rejects(
    retry.send(() => Promise.resolve(), Date.now() + 1000),
    /closing/,
  );
});

test('HubActivity: feedback counted per 10 s bucket; sends take their outcome; memory is bounded', () => {
  const a = new HubActivity(10_000, 15 * 60_000, 3);
  const t0 = 1_700_000_000_000;
  const rows = ['m1', 'm2', 'm3', 'm4'].map((id, i) => a.sent('dev', id, t0 + i));
  a.settled(rows[0]);
  a.settled(rows[1], { code: 'QUEUE_FULL' });
  a.feedback(
    [
      { originalMessageId: 'm3', deviceId: 'dev', statusCode: 'Purged', description: '', enqueuedTimeUtc: '' },
      { originalMessageId: 'x', deviceId: 'dev', statusCode: 'Success', description: '', enqueuedTimeUtc: '' },
    ],
    t0 + 5,
  );
  a.feedback(
    [{ originalMessageId: 'm4', deviceId: 'dev', statusCode: 'Expired', description: '', enqueuedTimeUtc: '' }],
    t0 + 20_000,
  );
  const s = a.stats(1, t0 + 20_000);
  assert.equal(s.buckets.length, 6);
  assert.deepEqual(s.totals, { Success: 1, Expired: 1, Rejected: 0, DeliveryCountExceeded: 0, Purged: 1 });
  assert.deepEqual(
    a.recentSends(10).map((r) => [r.messageId, r.state, r.error]),
    [
      ['m4', 'expired', undefined],
      ['m3', 'purged', undefined],
      ['m2', 'failed', 'QUEUE_FULL'],
    ],
    'newest first, the oldest (m1) forgotten past 3',
  );
  assert.equal(a.stats(15, t0 + 40 * 60_000).totals.Purged, 0, 'counts older than the window are gone');
});

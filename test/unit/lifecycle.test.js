'use strict';
// When a connection renews and reconnects: the one schedule both clients follow (src/core/lifecycle.ts).
const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectionLifecycle } = require('../../nodes/core/lifecycle.js');
const { IotHubError } = require('../../nodes/core/errors.js');

test('renewal lands between 65 % and 80 % of the token life, spread by the random draw', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000_000 });
  const fired = [];
  for (const r of [0, 0.5, 1]) {
    const life = new ConnectionLifecycle(undefined, () => undefined);
    life.renewBefore(
      1_000_000_000 / 1000 + 1000,
      () => fired.push([r, Date.now() - 1_000_000_000]),
      () => r,
    );
  }
  t.mock.timers.tick(649_999);
  assert.deepEqual(fired, []);
  t.mock.timers.tick(1);
  t.mock.timers.tick(75_000);
  t.mock.timers.tick(75_000);
  assert.deepEqual(fired, [
    [0, 650_000],
    [0.5, 725_000],
    [1, 800_000],
  ]);
});

test('a lost connection is retried after the backoff; unauthorized on the slow schedule; close stops both timers', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const events = [];
  const life = new ConnectionLifecycle({ initialDelayMs: 1000, jitter: 0, unauthorizedInitialDelayMs: 10_000 }, (ev) =>
    events.push(ev),
  );
  let reconnects = 0;
  life.connecting();
  life.lost(new IotHubError('CONNECTION_LOST', 'gone'), () => reconnects++);
  assert.deepEqual([events.at(-1).state, events.at(-1).nextRetryMs, life.retryPending], ['reconnecting', 1000, true]);
  t.mock.timers.tick(1000);
  assert.equal(reconnects, 1);
  life.connecting();
  life.lost(new IotHubError('UNAUTHORIZED', 'no'), () => reconnects++);
  assert.deepEqual(
    [events.at(-1).state, events.at(-1).attempt, events.at(-1).nextRetryMs],
    ['unauthorized', 2, 20_000],
  );
  let renewed = 0;
  life.renewBefore(Date.now() / 1000 + 100, () => renewed++);
  life.close();
  t.mock.timers.tick(300_000);
  assert.deepEqual([reconnects, renewed, life.retryPending], [1, 0, false]);
  life.lost(undefined, () => reconnects++);
  assert.equal(life.retryPending, false, 'nothing is scheduled once closing');
});

'use strict';
// The local hub's feedback on disk (src/localhub/feedback-journal.ts, docs/PROTOCOL.md 13.5): batches survive a restart,
// a settled batch does not come back, the file is rewritten once it is mostly removals, a line cut short is skipped,
// and the hub's state file no longer grows with the feedback waiting (saved inside it, 75,000 records made each save
// hold the hub's loop 40-70 ms).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { FeedbackQueue } = require('../../nodes/localhub/feedback-queue.js');
const { FeedbackJournal } = require('../../nodes/localhub/feedback-journal.js');
const { ServiceClient } = require('../../nodes/core/service-client.js');
const { parseConnectionString } = require('../../nodes/core/connection-string.js');
const { startHub, waitFor } = require('../support/flows');

const record = (i) => ({
  originalMessageId: `m${i}`,
  deviceId: 'd',
  statusCode: 'Success',
  description: 'Success',
  enqueuedTimeUtc: new Date(0).toISOString(),
  deviceGenerationId: 'g',
});

/** A feedback queue with its journal in dir, as the hub opens them. */
function open(dir) {
  const q = new FeedbackQueue({ batchMs: 1, batchSize: 64, ttlMs: 3600_000 });
  const j = new FeedbackJournal(dir, () => q.storedBatches());
  const had = j.load();
  q.journal = j;
  q.load(undefined, had);
  return { q, j };
}

/** A back end with credit that takes every batch and has not settled any yet. */
function reader(q) {
  const got = [];
  q.attach({ deliver: (b) => (got.push(b), true) });
  return got;
}

const lines = (j) => fs.readFileSync(j.file, 'utf8').split('\n').filter(Boolean).length;
const ids = (batches) => batches.flatMap((b) => b.records.map((r) => r.originalMessageId));
const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'fb-journal-'));

test('batches survive a restart; settled ones do not come back; nothing is written after close', () => {
  const dir = tempDir();
  const { q, j } = open(dir);
  for (let i = 0; i < 640; i++) q.add(record(i));
  q.flush();
  const got = reader(q);
  assert.equal(got.length, 10);
  for (const b of got.slice(0, 4)) q.settle(b, true);
  j.close();
  assert.equal(lines(j), 14, '10 batches made, 4 gone: one line each');
  // A settle after the stop was not saved by it, and must not reach the file a restarted hub reads.
  q.settle(got[4], true);
  j.flush();
  assert.equal(lines(j), 14, 'nothing written after close');

  const again = open(dir);
  const got2 = reader(again.q);
  assert.deepEqual(
    ids(got2),
    Array.from({ length: 384 }, (_, i) => `m${256 + i}`),
  );
  again.j.close();
});

test('once mostly removals, the file is rewritten with the live batches alone', () => {
  const dir = tempDir();
  const { q, j } = open(dir);
  for (let i = 0; i < 64 * 1500; i++) q.add(record(i));
  q.flush();
  j.flush();
  const got = reader(q);
  for (const b of got.slice(0, 1400)) q.settle(b, true);
  j.flush();
  j.close();
  assert.equal(lines(j), 100, 'the 100 live batches, not 1,500 made and 1,400 gone');
  const again = open(dir);
  assert.deepEqual(ids(reader(again.q)), ids(got.slice(1400)));
  again.j.close();
});

test('a line cut short (the hub died mid-write) is skipped; the whole lines before it load', () => {
  const dir = tempDir();
  const j = new FeedbackJournal(dir, () => []);
  const whole = JSON.stringify({ b: { id: 'a', records: [record(1)], enqueuedTime: Date.now() } });
  fs.writeFileSync(j.file, `${whole}\n{"b":{"id":"b","records":[{"origin`);
  assert.deepEqual(
    j.load().map((b) => b.id),
    ['a'],
  );
});

test("dead lines of earlier runs count towards the rewrite; a rewrite's temp file left by a dead hub is removed", () => {
  const dir = tempDir();
  const { q, j } = open(dir);
  for (let i = 0; i < 64 * 1100; i++) q.add(record(i));
  q.flush();
  const got = reader(q);
  for (const b of got.slice(0, 999)) q.settle(b, true);
  j.close();
  assert.equal(lines(j), 2099, 'not rewritten: 999 gone is under the 1,000 a rewrite waits for');
  fs.writeFileSync(`${j.file}.999999.tmp`, 'half a rewrite');
  const again = open(dir);
  assert.ok(!fs.existsSync(`${j.file}.999999.tmp`), 'the stale temp file is gone');
  // One more removal in this run: the 1,998 dead lines of the last run count, so the file is rewritten.
  again.q.settle(reader(again.q)[0], true);
  again.j.close();
  assert.equal(lines(again.j), 100, 'the 100 live batches alone');
});

test('batches in a state file from before the journal move into the journal', () => {
  const dir = tempDir();
  const { q, j } = open(dir);
  q.load({ batches: [{ id: 'old', records: [record(7)], enqueuedTime: Date.now() }], pending: [] });
  assert.equal(q.toJSONText(), '{"pending":[]}', 'the state file keeps only records not yet batched');
  j.flush();
  j.close();
  const again = open(dir);
  assert.deepEqual(ids(reader(again.q)), ['m7']);
  again.j.close();
});

test(
  'the hub: feedback waiting survives a restart, and its state file does not grow with it',
  { timeout: 60_000 },
  async () => {
    // 300 messages with ack full expire in an empty queue: 300 "Expired" records wait, nobody reads feedback.
    let hub = await startHub({ feedbackBatchMs: 1, lockMs: 200, queueDepth: 1000, devices: ['fb-journal'] });
    const { dataDir, ports } = hub;
    const c = parseConnectionString(hub.hubConnectionString);
    const creds = {
      hostName: c.hostName,
      ca: hub.caPem,
      transport: 'amqp',
      sharedAccessKeyName: c.sharedAccessKeyName,
      sharedAccessKey: c.sharedAccessKey,
    };
    const sender = new ServiceClient(creds);
    sender.open();
    try {
      const expiry = Date.now() + 2000;
      await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          sender.send('fb-journal', {
            body: Buffer.from(`e${i}`),
            properties: {},
            messageId: `e${i}`,
            ack: 'full',
            expiryTimeUtc: expiry,
          }),
        ),
      );
      await waitFor(() => hub.queueLength('fb-journal') === 0, 'all 300 expired', 20_000);
    } finally {
      await sender.close();
    }
    await hub.stop();
    const state = fs.readFileSync(path.join(dataDir, 'hub-state.json'), 'utf8');
    assert.ok(!state.includes('Expired'), 'no feedback record in the state file');
    assert.ok(
      fs.readFileSync(path.join(dataDir, 'hub-feedback.jsonl'), 'utf8').includes('"e299"'),
      'the journal holds them',
    );

    hub = await startHub({ dataDir, ports });
    const svc = new ServiceClient({ ...creds, hostName: parseConnectionString(hub.hubConnectionString).hostName });
    const records = [];
    svc.addFeedbackListener((rs) => {
      records.push(...rs);
    });
    svc.open();
    try {
      await waitFor(() => records.length >= 300, 'the 300 records after the restart', 20_000);
      assert.deepEqual(
        records.map((r) => r.originalMessageId).sort(),
        Array.from({ length: 300 }, (_, i) => `e${i}`).sort(),
      );
      assert.ok(records.every((r) => r.statusCode === 'Expired'));
    } finally {
      await svc.close();
      await hub.stop();
    }
  },
);

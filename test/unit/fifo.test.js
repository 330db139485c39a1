'use strict';
// The queue behind the service client's waiting sends and the c2d send node's held msgs (Fifo, src/core/fifo.ts).
const test = require('node:test');
const assert = require('node:assert/strict');
const { Fifo } = require('../../nodes/core/fifo.js');

test('items leave in order across compactions; peek, size and takeAll agree with what is left', () => {
  const q = new Fifo();
  assert.equal(q.take(), undefined);
  for (let i = 0; i < 3000; i++) q.push(i);
  const taken = [];
  for (let i = 0; i < 2000; i++) taken.push(q.take()); // past 1,024 and half: the array is compacted on the way
  for (let i = 3000; i < 4000; i++) q.push(i);
  assert.equal(q.size, 2000);
  assert.equal(q.peek(), 2000);
  for (let i = 0; i < 500; i++) taken.push(q.take());
  const rest = q.takeAll();
  assert.deepEqual(
    [...taken, ...rest],
    Array.from({ length: 4000 }, (_, i) => i),
  );
  assert.equal(q.size, 0);
  assert.equal(q.take(), undefined);
  assert.deepEqual(new Fifo([1, 2]).takeAll(), [1, 2]);
});

/**
 * rhea writes every outgoing frame into a new zero-filled 1 KB buffer (`Buffer.alloc`: an ArrayBuffer of its own,
 * external memory the garbage collector tracks) and then slices it: 3-4 us of a 30 us send in the bench's profiles. On
 * our connections the AMQP transport encodes its pending frames with rhea's own writer into one reused scratch buffer
 * and hands the socket a pooled copy: the same bytes (test/unit/amqp-frames.test.js holds them to rhea's), no zeroing,
 * no buffer per frame.
 *
 * It leans on rhea 3.x internals (`lib/types.js` Writer, `lib/frames.js` frame types, a transport's `pending` and
 * `header_sent`); the test fails if a rhea update moves them. With `DEBUG=rhea:frames` rhea's own writer stays, so its
 * log of each frame does too.
 */
import type { Connection } from 'rhea';

interface Frame {
  type: number;
  channel: number;
  performative?: unknown;
  payload?: Buffer;
}

interface Writer {
  buffer: Buffer;
  position: number;
  skip(bytes: number): void;
  write_uint(value: number, width: number): void;
  write(value: unknown): void;
  write_bytes(source: Buffer): void;
}

interface Transport {
  pending: Frame[];
  header_sent: unknown;
  write(socket: { write(b: Buffer): unknown }): void;
}

/* eslint-disable @typescript-eslint/no-require-imports -- rhea's internals have no typed entry point */
const types = require('rhea/lib/types.js') as { Writer: new (buffer: Buffer) => Writer };
const frames = require('rhea/lib/frames.js') as { TYPE_AMQP: number; TYPE_SASL: number };
const log = require('rhea/lib/log.js') as { frames: { enabled?: boolean } };
/* eslint-enable @typescript-eslint/no-require-imports */

/** Grown once by a big frame, kept up to this size; one per process (encoding is synchronous). */
const MAX_SCRATCH = 1 << 20;
let scratch: Buffer = Buffer.allocUnsafe(64 * 1024);

/** The frames as rhea's `frames.write_frame` writes them, one after the other, in one buffer of their own. */
export function encodeFrames(pending: readonly Frame[]): Buffer {
  const w = new types.Writer(scratch);
  for (const frame of pending) {
    const start = w.position;
    w.skip(4);
    w.write_uint(2, 1); // data offset, in 4-byte words
    w.write_uint(frame.type, 1);
    if (frame.type === frames.TYPE_AMQP) w.write_uint(frame.channel, 2);
    else if (frame.type === frames.TYPE_SASL) w.write_uint(0, 2);
    else throw new Error(`unknown AMQP frame type ${frame.type}`);
    if (frame.performative) {
      w.write(frame.performative);
      if (frame.payload) w.write_bytes(frame.payload);
    }
    w.buffer.writeUInt32BE(w.position - start, start);
  }
  // The writer grows into a new buffer when a frame does not fit: keep it for the next ones.
  if (w.buffer !== scratch && w.buffer.length <= MAX_SCRATCH) scratch = w.buffer;
  const out = Buffer.allocUnsafe(w.position);
  w.buffer.copy(out, 0, 0, w.position);
  return out;
}

/** Makes the connection's AMQP transport write its frames through encodeFrames (rhea's writer for the protocol header). */
export function writeFramesPooled(connection: Connection): void {
  if (log.frames.enabled) return;
  const t = (connection as unknown as { amqp_transport?: Transport }).amqp_transport;
  if (!t || typeof t.write !== 'function' || !Array.isArray(t.pending)) return;
  const rheaWrite = t.write;
  t.write = function (this: Transport, socket) {
    if (!this.header_sent || this.pending.length === 0) return rheaWrite.call(this, socket);
    const out = encodeFrames(this.pending);
    this.pending = [];
    socket.write(out);
  };
}

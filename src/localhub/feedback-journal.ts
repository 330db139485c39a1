/**
 * The feedback queue's batches on disk as a journal (docs/PROTOCOL.md 13.5): a line when a batch is made, a line when it
 * is gone, so a save costs what changed, not what is queued. Saved inside the hub's whole state, 75,000 waiting records
 * (13 MB of JSON) held the hub's loop 40-70 ms at every save.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FeedbackRecord } from '../core/message';
import { removeStaleTemps } from './store';

export interface StoredBatch {
  id: string;
  records: FeedbackRecord[];
  enqueuedTime: number;
}

/** Rewrite the file once this many batches are gone and they outnumber the live ones: each byte is rewritten O(1) times. */
const COMPACT_AFTER = 1000;
/** As the state file's debounce (store.ts): what a crash can lose, the same for both. */
const SAVE_MS = 100;

export class FeedbackJournal {
  readonly file: string;
  private fd: number | undefined;
  private lines: string[] = [];
  private flushing: NodeJS.Timeout | undefined;
  private gone = 0;
  private failed = false;
  /** After the hub's stop: what changes later was not saved by the stop either, and must not land in a file a restarted hub reads. */
  private closed = false;

  /** live() gives the batches the queue holds now (for a rewrite). */
  constructor(
    dir: string,
    private readonly live: () => StoredBatch[],
    private readonly log: (level: 'warn', text: string) => void = () => undefined,
  ) {
    this.file = path.join(dir, 'hub-feedback.jsonl');
  }

  /** The batches made and not gone. A line cut short by a crash is skipped; replaying a line twice changes nothing. */
  load(): StoredBatch[] {
    removeStaleTemps(this.file);
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new Error(
        `the local hub's feedback file ${this.file} cannot be read (${(err as Error).message}): move it away to start empty`,
      );
    }
    const batches = new Map<string, StoredBatch>();
    let lines = 0;
    for (const line of text.split('\n')) {
      if (!line) continue;
      lines++;
      let entry: { b?: StoredBatch; x?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue;
      }
      if (entry.b && typeof entry.b.id === 'string' && Array.isArray(entry.b.records)) batches.set(entry.b.id, entry.b);
      else if (typeof entry.x === 'string') batches.delete(entry.x);
    }
    // Every line but a live batch's counts towards the next rewrite, those of earlier runs too.
    this.gone = lines - batches.size;
    return [...batches.values()];
  }

  added(b: StoredBatch): void {
    this.append(batchLine(b));
  }

  removed(b: StoredBatch): void {
    this.gone++;
    this.append(`{"x":${JSON.stringify(b.id)}}`);
  }

  /** Lines leave together, at most every SAVE_MS (as the state file's saves): no system call per feedback message. */
  private append(line: string): void {
    if (this.closed) return;
    this.lines.push(line);
    if (!this.flushing) {
      this.flushing = setTimeout(() => this.flush(), SAVE_MS);
      this.flushing.unref();
    }
  }

  /** Writes what is pending now (also at stop: synchronously, so nothing made before a clean stop is lost). */
  flush(): void {
    if (this.flushing) clearTimeout(this.flushing);
    this.flushing = undefined;
    if (this.lines.length === 0) return;
    const liveNow = this.gone >= COMPACT_AFTER ? this.live() : undefined;
    try {
      if (liveNow && this.gone > liveNow.length) {
        // Mostly removals: the live batches alone, in a new file renamed over the old.
        const tmp = `${this.file}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, liveNow.map((b) => `${batchLine(b)}\n`).join(''), { mode: 0o600 });
        this.closeFile();
        fs.renameSync(tmp, this.file);
        this.gone = 0;
      } else {
        this.fd ??= fs.openSync(this.file, 'a', 0o600);
        fs.writeSync(this.fd, this.lines.join('\n') + '\n');
      }
      this.failed = false;
    } catch (err) {
      // The directory went away (the hub is being removed) or the disk is full: the queue itself goes on in memory.
      if (!this.failed) this.log('warn', `feedback is not being saved to ${this.file}: ${(err as Error).message}`);
      this.failed = true;
    }
    this.lines = [];
  }

  /** Writes what is pending and takes no more lines (the hub's stop). */
  close(): void {
    this.flush();
    this.closed = true;
    this.closeFile();
  }

  private closeFile(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** A batch's line, made when written and not kept: a rewrite is rare, and 75,000 waiting records' text would double what
 * they hold. */
function batchLine(b: StoredBatch): string {
  return `{"b":${JSON.stringify({ id: b.id, records: b.records, enqueuedTime: b.enqueuedTime })}}`;
}

/** Persistence: the registry and the queues in one JSON file, written atomically and debounced. */
import * as fs from 'node:fs';
import * as path from 'node:path';

export class JsonStore<T> {
  private timer: NodeJS.Timeout | undefined;
  readonly file: string;

  /** snapshot returns the state as JSON text (the queues build theirs incrementally). */
  constructor(dir: string, private readonly snapshot: () => string, private readonly delayMs = 100) {
    this.file = path.join(dir, 'hub-state.json');
  }

  load(): T | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.file, 'utf8')) as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`the local hub's state file ${this.file} cannot be read (${(err as Error).message}): move it away to start empty`);
    }
  }

  private lastWriteMs = 0;

  schedule(): void {
    // A big state waits longer between writes, so saving stays under ~5% of the hub's time (at most 2 s).
    if (!this.timer) this.timer = setTimeout(() => this.flush(), Math.min(2000, Math.max(this.delayMs, 20 * this.lastWriteMs)));
  }

  /** Write now: temp file then rename, so a crash never leaves half a file. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const t0 = performance.now();
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, this.snapshot(), { mode: 0o600 });
    fs.renameSync(tmp, this.file);
    this.lastWriteMs = performance.now() - t0;
  }
}

/** Persistence: the registry and the queues in one JSON file, written atomically and debounced. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * A hub that exited while writing `file` through a temp file (`file.<pid>[.<n>].tmp`, renamed into place when whole)
 * leaves that temp file behind; the file itself is whole. Removes those of other processes.
 */
export function removeStaleTemps(file: string): void {
  const dir = path.dirname(file);
  const base = path.basename(file).replace(/[.]/g, '\\.');
  const stale = new RegExp(`^${base}\\.(\\d+)(?:\\.\\d+)?\\.tmp$`);
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const m = stale.exec(name);
    if (m && Number(m[1]) !== process.pid) fs.rmSync(path.join(dir, name), { force: true });
  }
}

export class JsonStore<T> {
  private timer: NodeJS.Timeout | undefined;
  readonly file: string;
  /** Bumped by every save: a background write renames its file into place only if no newer save started since. */
  private generation = 0;
  private writing = false;
  private dirty = false;
  private lastSnapshotMs = 0;

  /** snapshot returns the state as JSON text (the queues build theirs incrementally). */
  constructor(
    dir: string,
    private readonly snapshot: () => string,
    private readonly delayMs = 100,
  ) {
    this.file = path.join(dir, 'hub-state.json');
  }

  load(): T | undefined {
    removeStaleTemps(this.file);
    try {
      return JSON.parse(fs.readFileSync(this.file, 'utf8')) as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(
        `the local hub's state file ${this.file} cannot be read (${(err as Error).message}): move it away to start empty`,
      );
    }
  }

  schedule(): void {
    if (this.writing) {
      this.dirty = true;
      return;
    }
    // A big state waits longer between saves, so building snapshots stays under ~5% of the hub's time (at most 2 s).
    if (!this.timer)
      this.timer = setTimeout(() => this.save(), Math.min(2000, Math.max(this.delayMs, 20 * this.lastSnapshotMs)));
  }

  private tmpName(gen: number): string {
    return `${this.file}.${process.pid}.${gen}.tmp`;
  }

  /**
   * Save in the background: the snapshot is taken now, the file written by libuv's threads (a write of megabytes
   * on the event loop stalled every connection), then renamed into place unless a newer save overtook it.
   */
  private save(): void {
    this.timer = undefined;
    const gen = ++this.generation;
    const t0 = performance.now();
    const text = this.snapshot();
    this.lastSnapshotMs = performance.now() - t0;
    const tmp = this.tmpName(gen);
    this.writing = true;
    fs.writeFile(tmp, text, { mode: 0o600 }, (err) => {
      this.writing = false;
      if (err || gen !== this.generation) {
        fs.rm(tmp, { force: true }, () => undefined);
      } else {
        try {
          fs.renameSync(tmp, this.file);
        } catch {
          // The directory went away (the hub is being removed): nothing to keep.
        }
      }
      if (this.dirty) {
        this.dirty = false;
        this.schedule();
      }
    });
  }

  /** Write now, synchronously (start and stop): temp file then rename, so a crash never leaves half a file. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty = false;
    const gen = ++this.generation;
    const tmp = this.tmpName(gen);
    fs.writeFileSync(tmp, this.snapshot(), { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
}

/**
 * Where DPS put each device, kept across restarts so that a deploy or a reboot does not register again (DPS throttles
 * registrations). One small JSON file, keyed by (ID scope, registration id), holding {assignedHub, deviceId} and no
 * key. Kept in memory and read again only when the file changed under it; changes are written whole (temp file and
 * rename) 100 ms after the first, so a fleet registering together costs one write, not one per device. A file that
 * cannot be read or written costs a registration, never a crash.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DpsAssignment } from './dps-client';

export interface AssignmentStore {
  get(idScope: string, registrationId: string): DpsAssignment | undefined;
  set(idScope: string, registrationId: string, a: DpsAssignment): void;
  delete(idScope: string, registrationId: string): void;
  /** Writes what is pending now. */
  flush?(): void;
}

interface FileShape {
  version: 1;
  assignments: Record<string, DpsAssignment & { at?: string }>;
}

const keyOf = (idScope: string, registrationId: string) => `${idScope}/${registrationId}`;

export class MemoryAssignmentStore implements AssignmentStore {
  private readonly map = new Map<string, DpsAssignment>();
  get(idScope: string, registrationId: string): DpsAssignment | undefined {
    return this.map.get(keyOf(idScope, registrationId));
  }
  set(idScope: string, registrationId: string, a: DpsAssignment): void {
    this.map.set(keyOf(idScope, registrationId), { assignedHub: a.assignedHub, deviceId: a.deviceId });
  }
  delete(idScope: string, registrationId: string): void {
    this.map.delete(keyOf(idScope, registrationId));
  }
}

/** One store per file in a process: two config nodes writing one file through two caches would undo each other's writes. */
const byFile = new Map<string, FileAssignmentStore>();

export class FileAssignmentStore implements AssignmentStore {
  /** The shared store of `file`; onProblem hears of a file that cannot be read or written (once per kind). */
  static for(file: string, onProblem?: (text: string) => void): FileAssignmentStore {
    const key = path.resolve(file);
    let s = byFile.get(key);
    if (!s) {
      s = new FileAssignmentStore(key);
      byFile.set(key, s);
    }
    if (onProblem) s.listeners.add(onProblem);
    return s;
  }

  private readonly listeners = new Set<(text: string) => void>();

  /** A closing config node stops listening. */
  off(onProblem: (text: string) => void): void {
    this.listeners.delete(onProblem);
  }
  private readonly warned = new Set<string>();
  /** The file as last read or written here, and its size and time then: another writer's change is read again. */
  private data: FileShape | undefined;
  private stamp = '';
  private timer: NodeJS.Timeout | undefined;

  /** writeDelayMs: a fleet registering together is written once, not once per device. */
  constructor(
    readonly file: string,
    onProblem?: (text: string) => void,
    private readonly writeDelayMs = 100,
  ) {
    if (onProblem) this.listeners.add(onProblem);
  }

  private problem(kind: string, text: string): void {
    if (this.warned.has(kind)) return;
    this.warned.add(kind);
    for (const l of this.listeners) l(text);
  }

  private statOf(): string {
    try {
      const st = fs.statSync(this.file);
      return `${st.size}:${st.mtimeMs}`;
    } catch {
      return 'none';
    }
  }

  private current(): FileShape {
    // Pending changes are ours and newest: keep them until written.
    if (this.data && (this.timer || this.statOf() === this.stamp)) return this.data;
    this.stamp = this.statOf();
    this.data = this.read();
    return this.data;
  }

  private read(): FileShape {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        this.problem(
          'read',
          `DPS assignments: cannot read ${this.file} (${(err as Error).message}): devices register again`,
        );
      return { version: 1, assignments: {} };
    }
    try {
      const j = JSON.parse(text) as Partial<FileShape> | null;
      const out: FileShape = { version: 1, assignments: {} };
      for (const [k, v] of Object.entries(j?.assignments ?? {})) {
        if (v && typeof v.assignedHub === 'string' && typeof v.deviceId === 'string') out.assignments[k] = v;
      }
      return out;
    } catch {
      this.problem('parse', `DPS assignments: ${this.file} is not JSON: devices register again, and it is rewritten`);
      return { version: 1, assignments: {} };
    }
  }

  private changed(): void {
    if (this.writeDelayMs <= 0) return this.flush();
    this.timer ??= setTimeout(() => this.flush(), this.writeDelayMs);
  }

  /** Writes pending changes now (the config node is closing). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.data) return;
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      fs.writeFileSync(tmp, JSON.stringify(this.data, null, 1));
      fs.renameSync(tmp, this.file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      this.problem(
        'write',
        `DPS assignments: cannot write ${this.file} (${(err as Error).message}): devices register again after a restart`,
      );
    }
    this.stamp = this.statOf();
  }

  get(idScope: string, registrationId: string): DpsAssignment | undefined {
    const a = this.current().assignments[keyOf(idScope, registrationId)];
    return a ? { assignedHub: a.assignedHub, deviceId: a.deviceId } : undefined;
  }

  set(idScope: string, registrationId: string, a: DpsAssignment): void {
    this.current().assignments[keyOf(idScope, registrationId)] = {
      assignedHub: a.assignedHub,
      deviceId: a.deviceId,
      at: new Date().toISOString(),
    };
    this.changed();
  }

  delete(idScope: string, registrationId: string): void {
    const data = this.current();
    const k = keyOf(idScope, registrationId);
    if (!(k in data.assignments)) return;
    delete data.assignments[k];
    this.changed();
  }
}

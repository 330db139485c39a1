/**
 * Where DPS put each device, kept across restarts so that a deploy or a reboot does not register again (DPS throttles
 * registrations). One small JSON file, keyed by (ID scope, registration id), holding {assignedHub, deviceId} and no
 * key. Read and written whole, synchronously, at each change: changes are rare (a registration) and every config
 * node of the runtime then sees the same file. A file that cannot be read or written costs a registration, never a crash.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DpsAssignment } from './dps-client';

export interface AssignmentStore {
  get(idScope: string, registrationId: string): DpsAssignment | undefined;
  set(idScope: string, registrationId: string, a: DpsAssignment): void;
  delete(idScope: string, registrationId: string): void;
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

export class FileAssignmentStore implements AssignmentStore {
  /** onProblem hears of a file that cannot be read or written (said once per kind, never with a key: there is none). */
  constructor(
    readonly file: string,
    private readonly onProblem: (text: string) => void = () => undefined,
  ) {}

  private warned = new Set<string>();
  private problem(kind: string, text: string): void {
    if (this.warned.has(kind)) return;
    this.warned.add(kind);
    this.onProblem(text);
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

  private write(data: FileShape): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      fs.writeFileSync(tmp, JSON.stringify(data, null, 1));
      fs.renameSync(tmp, this.file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      this.problem(
        'write',
        `DPS assignments: cannot write ${this.file} (${(err as Error).message}): devices register again after a restart`,
      );
    }
  }

  get(idScope: string, registrationId: string): DpsAssignment | undefined {
    const a = this.read().assignments[keyOf(idScope, registrationId)];
    return a ? { assignedHub: a.assignedHub, deviceId: a.deviceId } : undefined;
  }

  set(idScope: string, registrationId: string, a: DpsAssignment): void {
    const data = this.read();
    data.assignments[keyOf(idScope, registrationId)] = {
      assignedHub: a.assignedHub,
      deviceId: a.deviceId,
      at: new Date().toISOString(),
    };
    this.write(data);
  }

  delete(idScope: string, registrationId: string): void {
    const data = this.read();
    const k = keyOf(idScope, registrationId);
    if (!(k in data.assignments)) return;
    delete data.assignments[k];
    this.write(data);
  }
}

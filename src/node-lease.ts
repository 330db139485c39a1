/**
 * What the three nodes that use a connection do alike: take a lease from the config node, show in the node's status
 * why none could be had, and give it back when the node closes (removed: at once; a restart: the session lingers).
 */
import { IotHubError, reasonOf } from './core/errors';
import type { StatusEvent } from './core/state';
import type { Node, NodeAPI, NodeStatus } from './node-red';

/** A failure as a short status text (its cause when known, else its translated code); the node's log carries the whole message. */
export function failureStatus(RED: NodeAPI, err: unknown): NodeStatus {
  const reason = err instanceof IotHubError ? err.reason : undefined;
  if (reason) return { fill: 'red', shape: 'ring', text: reason };
  const code = err instanceof IotHubError ? err.code : 'INTERNAL';
  const key = `iothub-connection.errorCode.${code}`;
  const text = RED._(key);
  return { fill: 'red', shape: 'ring', text: text && text !== key ? text : code.toLowerCase().replace(/_/g, ' ') };
}

/**
 * Logs why a connection fails, with the fix, once: again only when the cause changes, or comes back after a success (a
 * retry every few seconds must not fill the log with the same line). `who` keeps the devices of a fleet apart, and a
 * fleet logs a cause once while any of its devices has it (a hub restart is one line, not one per device); `named`
 * puts the device id before the message. forget(who): a device that left the fleet.
 */
export interface CauseLogger {
  (ev: StatusEvent, who?: string, named?: boolean): void;
  forget(who: string): void;
}

export function causeLogger(node: Node): CauseLogger {
  const causeOf = new Map<string, string>();
  const failing = new Map<string, number>();
  const forget = (who: string) => {
    const cause = causeOf.get(who);
    if (cause === undefined) return;
    causeOf.delete(who);
    const n = (failing.get(cause) ?? 1) - 1;
    if (n > 0) failing.set(cause, n);
    else failing.delete(cause);
  };
  const log = (ev: StatusEvent, who = '', named = false) => {
    if (ev.state === 'connected' || ev.state === 'closed') {
      forget(who);
      return;
    }
    const err = ev.error;
    if (!err) return;
    const cause = reasonOf(err) ?? err.code;
    if (causeOf.get(who) === cause) return;
    forget(who);
    causeOf.set(who, cause);
    const n = (failing.get(cause) ?? 0) + 1;
    failing.set(cause, n);
    if (n === 1) node.warn(named ? `${who}: ${err.message}` : err.message);
  };
  return Object.assign(log, { forget });
}

/** Errors logged already where they arose (a config node's): the nodes that use it show them, and do not log them again. */
const logged = new WeakSet<object>();

export function markLogged(err: object): void {
  logged.add(err);
}

export interface Releasable {
  release(removed: boolean): Promise<void>;
}

export interface HeldLease<L> {
  /** The lease while the node holds it. */
  readonly lease: L | undefined;
  /** Why there is none, once acquiring failed. */
  readonly error: Error | undefined;
}

/**
 * Holds the lease `acquiring` resolves to until the node closes. `use` runs once it is there; a lease that arrives
 * after the node closed goes straight back. `beforeRelease` runs first in the node's close (timers, warnings).
 */
export function holdLease<L extends Releasable>(
  RED: NodeAPI,
  node: Node,
  acquiring: Promise<L>,
  use: (l: L) => void,
  beforeRelease?: () => void,
): HeldLease<L> {
  const held: { lease: L | undefined; error: Error | undefined } = { lease: undefined, error: undefined };
  let closing = false;
  acquiring.then(
    (l) => {
      if (closing) {
        void l.release(false);
        return;
      }
      held.lease = l;
      use(l);
    },
    (err: Error) => {
      held.error = err;
      node.status(failureStatus(RED, err));
      if (!logged.has(err)) node.error(err.message);
    },
  );
  node.on('close', (removed, done) => {
    closing = true;
    beforeRelease?.();
    const l = held.lease;
    held.lease = undefined;
    (l ? l.release(removed) : Promise.resolve()).then(
      () => done(),
      () => done(),
    );
  });
  return held;
}

/**
 * How many device connections one HubSession sets up at once: at most `limit` attempts under way (TLS handshake,
 * CONNECT, subscription), the others waiting in turn; a slot is freed when its attempt connects or fails. Why: one node acting as 10,000 devices opened them all at
 * once; the handshakes queued up at the hub, the last ones passed mqtt.js's 30 s connect timeout and tried again,
 * adding to the queue (npm run bench -- scale: 11,819 attempts for 10,000 devices, 1,537 retrying at the peak, 59.9 s).
 * HubSession's limit is 400: on a 2-core machine at load 20, 10,000 devices connected in 105 s with 400 against 153 s
 * with 100, with less CPU on both sides (more handshakes per turn of the event loop); an attempt still waits ~4 s, far
 * from the 30 s connect time-out.
 */
export class ConnectGate {
  private active = 0;
  /** In order of arrival; a Set so that a closed client leaves the line at once. */
  private readonly waiting = new Set<() => void>();

  constructor(private readonly limit: number) {}

  /** start runs now or once a slot is free, with the release to call when the attempt ends (more calls do nothing). Returns a cancel for the wait. */
  enter(start: (release: () => void) => void): () => void {
    const run = () => {
      this.active++;
      let released = false;
      start(() => {
        if (released) return;
        released = true;
        this.active--;
        this.next();
      });
    };
    if (this.active < this.limit) {
      run();
      return () => undefined;
    }
    this.waiting.add(run);
    return () => this.waiting.delete(run);
  }

  private next(): void {
    for (const run of this.waiting) {
      if (this.active >= this.limit) return;
      this.waiting.delete(run);
      run();
    }
  }
}

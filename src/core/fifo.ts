/**
 * A first-in first-out queue whose take is O(1): read from a head index (Array.shift copies the array), the slots read
 * cleared so what they held can be collected, and the array compacted once more than half of it is read.
 */
export class Fifo<T> {
  private items: (T | undefined)[];
  private head = 0;

  constructor(items: T[] = []) {
    this.items = items;
  }

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest item without taking it. */
  peek(): T | undefined {
    return this.items[this.head];
  }

  /** The oldest item, taken; undefined when empty. */
  take(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Every item in order, and the queue emptied. */
  takeAll(): T[] {
    const all = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return all;
  }
}

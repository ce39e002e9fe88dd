// One read shared by every caller that accepts its age (issue 23 §3): a
// repository's open pull requests are listed once for all the attempts polling
// them, not once per attempt. A caller says how old an answer it accepts
// (`notBefore`, the earliest start it takes): it gets the last answer if that read
// started late enough, joins the read in flight if that one did, or else waits for
// the next one, which starts once the read in flight ends and is shared by every
// caller that queued for it. A failed read fails its callers and leaves the last
// answer as it was. The clock is injected.

export class SharedRead<T> {
  private last: { startedAt: number; value: T } | undefined;
  private inflight: { startedAt: number; promise: Promise<T> } | undefined;
  private next: Promise<T> | undefined;
  private readonly read: () => Promise<T>;
  private readonly now: () => number;

  constructor(read: () => Promise<T>, now: () => number = Date.now) {
    this.read = read;
    this.now = now;
  }

  /** An answer from a read that started at or after `notBefore` (epoch ms). */
  get(notBefore: number): Promise<T> {
    if (this.last && this.last.startedAt >= notBefore) return Promise.resolve(this.last.value);
    if (this.inflight && this.inflight.startedAt >= notBefore) return this.inflight.promise;
    if (!this.inflight) return this.start();
    // A read is under way that started too early for this caller: the next one starts when it ends.
    return this.next ??= this.inflight.promise.then(() => undefined, () => undefined).then(() => {
      this.next = undefined;
      return this.start();
    });
  }

  /** The last answer and when its read started, if any. */
  peek(): { startedAt: number; value: T } | undefined {
    return this.last;
  }

  private start(): Promise<T> {
    const startedAt = this.now();
    const promise = this.read().then((value) => {
      if (!this.last || this.last.startedAt <= startedAt) this.last = { startedAt, value };
      return value;
    }).finally(() => {
      if (this.inflight?.promise === promise) this.inflight = undefined;
    });
    this.inflight = { startedAt, promise };
    return promise;
  }
}

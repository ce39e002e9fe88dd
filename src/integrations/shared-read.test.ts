import { describe, expect, it } from 'vitest';
import { SharedRead } from './shared-read.ts';

/** A read whose answers the test releases one at a time. */
function controlled() {
  const pending: Array<{ resolve: (v: number) => void; reject: (e: Error) => void }> = [];
  let reads = 0;
  const read = () => new Promise<number>((resolve, reject) => { reads++; pending.push({ resolve, reject }); });
  return { read, pending, reads: () => reads };
}

describe('SharedRead', () => {
  it('gives callers that accept its age the last answer, or the read in flight, without reading again', async () => {
    let now = 1000;
    const c = controlled();
    const shared = new SharedRead(c.read, () => now);
    const a = shared.get(0);
    const b = shared.get(1000);
    expect(c.reads()).toBe(1);
    c.pending.shift()!.resolve(7);
    expect([await a, await b]).toEqual([7, 7]);
    now = 5000;
    expect(await shared.get(1000)).toBe(7);
    expect(c.reads()).toBe(1);
    expect(shared.peek()).toEqual({ startedAt: 1000, value: 7 });
  });

  it('makes a caller needing a fresher answer wait for the next read, shared by all who queued meanwhile', async () => {
    let now = 1000;
    const c = controlled();
    const shared = new SharedRead(c.read, () => now);
    const first = shared.get(0);
    now = 2000;
    const fresh1 = shared.get(2000);
    const fresh2 = shared.get(1500);
    expect(c.reads()).toBe(1);
    c.pending.shift()!.resolve(1);
    expect(await first).toBe(1);
    await Promise.resolve();
    await new Promise((r) => setTimeout(r, 0));
    expect(c.reads()).toBe(2);
    c.pending.shift()!.resolve(2);
    expect([await fresh1, await fresh2]).toEqual([2, 2]);
    expect(shared.peek()?.value).toBe(2);
  });

  it('fails the callers of a failed read and keeps the last answer', async () => {
    let now = 1000;
    const c = controlled();
    const shared = new SharedRead(c.read, () => now);
    const ok = shared.get(0);
    c.pending.shift()!.resolve(1);
    await ok;
    now = 9000;
    const failing = shared.get(9000);
    c.pending.shift()!.reject(new Error('502'));
    await expect(failing).rejects.toThrow('502');
    expect(shared.peek()).toEqual({ startedAt: 1000, value: 1 });
    const again = shared.get(9000);
    expect(c.reads()).toBe(3);
    c.pending.shift()!.resolve(3);
    expect(await again).toBe(3);
  });
});

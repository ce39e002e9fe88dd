// Leader election on an etcd lease (SPEC §5): the leader key is created with the
// replica's lease, only if absent. The leader renews well before the TTL and
// stops acting the moment a renewal fails or its lease may have expired; every
// write it makes is fenced on the leader key's create revision, so a deposed
// leader that has not noticed yet still cannot write.
import type { Logger } from '../observability/log.ts';
import type { Fence } from './attempt-store.ts';
import { KEYS } from './attempt-store.ts';
import type { KV, Lease } from './kv.ts';

export interface LeaderOptions {
  ttlSeconds?: number;
  /** How often the leader renews, and a standby retries when it saw no change. */
  renewIntervalMs?: number;
  onElected?: () => void;
  onDeposed?: (why: string) => void;
}

/**
 * 6 s: a SIGKILLed leader is replaced within 4–6 s of its last renewal, so a standby acts in under 10 s
 * (SPEC's 15 s took 11.7–13 s). The leader renews every 2 s and acts for 4 s after a renewal, so a renewal
 * may be 2 s late before the leader pauses, and 6 s late before it loses the lease; the fence stops a
 * deposed leader's writes either way.
 */
export const DEFAULT_LEADER_LEASE_SEC = 6;

/**
 * How long after a grant or renewal we may act on it: the lease's TTL less a
 * margin for the time etcd's clock and ours can disagree by, 2 s, or a third of
 * a short TTL (a fixed 2 s left a 2 s lease valid for no time at all: a replica
 * that held the leader key, kept every other one out, and never acted).
 */
export function validForMs(ttlSeconds: number): number {
  return ttlSeconds * 1000 - Math.min(2000, (ttlSeconds * 1000) / 3);
}

/** A fence no leader key can match: writes made with it always fail. */
const NO_FENCE: Fence = { key: KEYS.leader, createRevision: '-1' };

export class LeaderElector {
  private readonly kv: KV;
  readonly identity: string;
  private readonly log: Logger;
  private readonly ttlSeconds: number;
  private readonly renewIntervalMs: number;
  private readonly options: LeaderOptions;
  private lease?: Lease;
  private current?: Fence;
  /** Local bound on the lease's life: past it we stop acting even if etcd is silent. */
  private validUntil = 0;
  private timer?: NodeJS.Timeout;
  private stopWatch?: () => Promise<void>;
  private stopped = false;
  private campaigning = false;
  /**
   * Our lease that could not be revoked when we stopped leading (etcd was
   * unreachable). etcd keeps leases through a restart, so the leader key bound
   * to it would block every campaign, ours included, for a whole TTL after etcd
   * is back: it is revoked at the next campaign instead.
   */
  private unrevoked?: Lease;

  constructor(kv: KV, identity: string, log: Logger, options: LeaderOptions = {}) {
    this.kv = kv;
    this.identity = identity;
    this.log = log;
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_LEADER_LEASE_SEC;
    this.renewIntervalMs = options.renewIntervalMs ?? Math.floor((this.ttlSeconds * 1000) / 3);
    this.options = options;
  }

  isLeader(): boolean {
    return this.current !== undefined && Date.now() < this.validUntil;
  }

  /** The fence for writes: this replica's, or one that can never match. */
  fence(): Fence {
    return this.isLeader() ? this.current! : NO_FENCE;
  }

  async start(): Promise<void> {
    this.stopWatch = await this.kv.watchPrefix(KEYS.leader, (_key, deleted) => {
      if (deleted && !this.isLeader()) void this.campaign();
    }, (error) => this.log.warn('Leader watch failed; relying on periodic retries', { error: error.message }));
    await this.campaign();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.stopWatch?.();
    // Revoking deletes the leader key at once, so a standby need not wait for the TTL.
    await this.depose('stopping');
    const lease = this.lease;
    this.lease = undefined;
    await lease?.revoke().catch((error: Error) => this.log.warn('Could not revoke leader lease', { error: error.message }));
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const work = this.current ? this.renew() : this.campaign();
      void work.finally(() => this.schedule());
    }, this.renewIntervalMs);
  }

  private async campaign(): Promise<void> {
    if (this.campaigning || this.stopped || this.current) return;
    this.campaigning = true;
    try {
      if (this.unrevoked) {
        // We have stopped acting since; dropping the key it holds can only hand leadership on.
        await this.unrevoked.revoke().catch(async (error: unknown) => {
          // Already gone (expired meanwhile): then so is any key bound to it.
          if ((await this.kv.get(KEYS.leader))?.value === this.identity) throw error;
        });
        this.unrevoked = undefined;
      }
      this.lease ??= await this.kv.grantLease(this.ttlSeconds);
      const grantedAt = Date.now();
      const result = await this.kv.txn({
        compares: [{ key: KEYS.leader, target: 'absent' }],
        puts: [{ key: KEYS.leader, value: this.identity, lease: this.lease.id }],
        deletes: [],
      });
      if (!result.succeeded) {
        // Someone else leads. Keep our lease alive for the next campaign.
        await this.lease.renew().then((ttl) => { if (ttl <= 0) this.lease = undefined; });
        return;
      }
      this.current = { key: KEYS.leader, createRevision: result.revision };
      this.validUntil = grantedAt + validForMs(this.ttlSeconds);
      this.log.info('Became leader', { identity: this.identity });
      this.options.onElected?.();
    } catch (error) {
      this.lease = undefined;
      this.log.warn('Leader campaign failed; retrying', { error: (error as Error).message });
    } finally {
      this.campaigning = false;
    }
  }

  private async renew(): Promise<void> {
    const lease = this.lease;
    if (!lease) return this.depose('lease missing');
    const startedAt = Date.now();
    try {
      const ttl = await lease.renew();
      if (ttl <= 0) {
        this.lease = undefined;
        return this.depose('lease expired');
      }
      const leader = await this.kv.get(KEYS.leader);
      if (leader?.createRevision !== this.current?.createRevision) return this.depose('leader key replaced');
      this.validUntil = startedAt + validForMs(ttl);
    } catch (error) {
      // We cannot tell whether etcd still has our lease: stop acting now.
      this.depose(`renewal failed: ${(error as Error).message}`);
    }
  }

  private depose(why: string): Promise<void> {
    if (!this.current) return Promise.resolve();
    this.current = undefined;
    this.validUntil = 0;
    this.log.warn('Lost leadership', { identity: this.identity, why });
    this.options.onDeposed?.(why);
    // Give the lease up, so a leader key still bound to it cannot outlive our
    // leadership (if etcd is unreachable, the TTL ends it instead).
    const lease = this.lease;
    this.lease = undefined;
    return (lease?.revoke() ?? Promise.resolve()).catch((error: Error) => {
      this.unrevoked = lease;
      this.log.warn('Could not revoke leader lease; revoking it at the next campaign', { error: error.message });
    });
  }
}

// What the reconcilers need of the attempt store (store/attempt-store.ts keeps it
// in etcd): an app's state, an attempt, and the fenced writes of a decision.
import type { CloudEvent } from '../fsm/cloud-events.ts';
import type { AttemptRecord, HealthCheck } from '../fsm/record.ts';
import type { AuditOutboxEntry, AuditOutboxStore } from './audit.ts';
import { TerminalError } from './errors.ts';

/** Proof of leadership checked inside every write: the leader key as this replica created it. */
export interface Fence {
  key: string;
  createRevision: string;
}

export interface StoredAttempt {
  record: AttemptRecord;
  checks: HealthCheck[];
  /** mod_revision of the state key: the compare-and-swap token of the next write. */
  modRevision: string;
}

/** The value of an attempt's state key. */
export interface StateKey {
  state: AttemptRecord['state'];
  since: string;
  reason: AttemptRecord['reason'];
  version: number;
}

/** A degradation being counted before any attempt exists (the app's health key alone). */
export interface PendingDegradation {
  correlationId: string;
  checks: HealthCheck[];
  /** mod_revision of the health key: the compare-and-swap token of the next write. */
  modRevision: string;
}

export interface AppState {
  active?: StoredAttempt;
  pending?: PendingDegradation;
  lastRollbackAt?: string;
  rolledBackFrom: string[];
  /** When the app's attempts of the last hour started. */
  attemptStarts: string[];
}

export interface AttemptWrite {
  appKey: string;
  record: AttemptRecord;
  /** The health history to keep; undefined leaves it as it is. */
  checks?: HealthCheck[];
  /** The state key's mod_revision read before deciding; null for a new attempt. */
  expectedModRevision: string | null;
  events: CloudEvent[];
  /** The app's rollback memory; its keys expire after the retention or the cooldown, whichever is longer. */
  app?: { rolledBackFrom?: string; lastRollbackAt?: string; cooldownSeconds?: number; attemptStarts?: string[] };
  /** Release the app's active key (and lease the attempt) although its state is not an ended one. */
  release?: boolean;
  /** The transition's audit records, kept until their chain holds them (`id` names them within the chain). */
  audit?: { id: string; entry: AuditOutboxEntry };
}

/** A write of the app's health key alone, before any attempt: checks, or null to delete it. */
export interface DegradationWrite {
  appKey: string;
  degradation: { correlationId: string; checks: HealthCheck[] } | null;
  /** The health key's mod_revision read before deciding; null when it was absent. */
  expectedModRevision: string | null;
  events: CloudEvent[];
  audit?: { id: string; entry: AuditOutboxEntry };
}

/** Where an attempt is: the value of its index key (KEYS.attemptIndex). */
export interface AttemptLocation {
  appKey: string;
  /** The namespace of its RollbackAttempt (its Application's). */
  namespace: string;
}

/** What AttemptStore.indexUnindexed() did. */
export interface IndexReport {
  /** The index keys it wrote. */
  indexed: string[];
  /** Attempt keys whose value is not JSON (or names no app namespace), left without an index key. */
  unreadable: string[];
}

export type CommitResult =
  | { ok: true; modRevision: string; auditKey?: string }
  | { ok: false; reason: 'conflict' | 'fenced' };

/** The audit outbox is part of it: a write's audit records are committed with it, then recorded and removed. */
export interface AttemptStorePort extends AuditOutboxStore {
  loadApp(appKey: string): Promise<AppState>;
  getAttempt(appKey: string, correlationId: string): Promise<StoredAttempt | undefined>;
  activeId(appKey: string): Promise<string | undefined>;
  locateAttempt(correlationId: string): Promise<AttemptLocation | undefined>;
  commit(write: AttemptWrite): Promise<CommitResult>;
  commitDegradation(write: DegradationWrite): Promise<CommitResult>;
}

/**
 * A stored value that is not JSON: no retry can read it, so the reconcile stops
 * (TerminalError) instead of failing every backoff forever; the key names what to
 * repair (or delete) by hand.
 */
export class CorruptRecord extends TerminalError {
  readonly key: string;
  constructor(key: string, cause: unknown) {
    super('CorruptRecord', `${key} in etcd is not JSON (${cause instanceof Error ? cause.message : String(cause)})`, { cause });
    this.name = 'CorruptRecord';
    this.key = key;
  }
}

import { describe, expect, it } from 'vitest';
import { openAuditLog, type AuditSink } from './audit-log.ts';
import { auditLogLine, auditLogTee } from './log-line.ts';
import { GENESIS_HASH, REDACTED, sealRecord, type AuditRecord } from './record.ts';

const at = new Date('2026-03-01T12:00:00.000Z');

describe('auditLogLine', () => {
  it('puts the record fields at the top level, marked as audit, after the base fields', () => {
    const record = sealRecord({
      level: 'WARN', module: 'MergeController', correlationId: 'c-1', actionType: 'INVARIANT_CHECK',
      message: 'Checked invariants before merging', reasoning: 'I3 failed',
      invariantsChecked: { I1_environment: 'PASS', I3_replicas: 'FAIL' }, metadata: { appName: 'cart', prNumber: 7 }, eventId: 'e-1',
    }, GENESIS_HASH, at);
    const line = auditLogLine(record, { replica: 'op-0' });
    expect(line).not.toContain('\n');
    expect(Object.keys(JSON.parse(line))).toEqual([
      'replica', 'timestamp', 'level', 'module', 'correlationId', 'actionType', 'message', 'reasoning', 'invariantsChecked', 'metadata', 'eventId', 'hash', 'audit',
    ]);
    expect(JSON.parse(line)).toEqual({
      replica: 'op-0', timestamp: '2026-03-01T12:00:00.000Z', level: 'WARN', module: 'MergeController', correlationId: 'c-1',
      actionType: 'INVARIANT_CHECK', message: 'Checked invariants before merging', reasoning: 'I3 failed',
      invariantsChecked: { I1_environment: 'PASS', I3_replicas: 'FAIL' }, metadata: { appName: 'cart', prNumber: 7 }, eventId: 'e-1', hash: record.hash, audit: true,
    });
  });

  it('names the record\'s trace and span (a record made in a traced reconcile), covered by its hash', () => {
    const input = { module: 'Reconciler', correlationId: '5b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d', actionType: 'FSM_TRANSITION', message: 'PRCreated -> AwaitingMergeApproval', eventId: 'e-2' } as const;
    const traced = sealRecord({ ...input, trace_id: '5b1c2d3e4f504a6b8c7d9e0f1a2b3c4d', span_id: '00f067aa0ba902b7' }, GENESIS_HASH, at);
    expect(JSON.parse(auditLogLine(traced))).toMatchObject({ trace_id: '5b1c2d3e4f504a6b8c7d9e0f1a2b3c4d', span_id: '00f067aa0ba902b7', eventId: 'e-2' });
    expect(traced.hash).not.toBe(sealRecord(input, GENESIS_HASH, at).hash);
    expect(JSON.parse(auditLogLine(sealRecord(input, GENESIS_HASH, at)))).not.toHaveProperty('trace_id');
  });

  it('never lets a base field pass for a record field', () => {
    const record = sealRecord({ module: 'Operator', actionType: 'LEADER_ELECTED', message: 'Became leader' }, GENESIS_HASH, at);
    const line = JSON.parse(auditLogLine(record, { level: 'DEBUG', module: 'Other', audit: false, replica: 'op-1' }));
    expect(line).toMatchObject({ level: 'INFO', module: 'Operator', audit: true, replica: 'op-1' });
  });

  it('carries no secret that was handed to the audit log, in metadata, message or reasoning', async () => {
    const token = 'ghs_abcdefghijklmnopqrstuvwx0123456789';
    const lines: string[] = [];
    const sink: AuditSink = { name: 'memory', write: async () => undefined };
    const log = await openAuditLog({ sink, onSealed: auditLogTee({}, (l) => lines.push(l)) });
    await log.record({
      module: 'PRGenerator', actionType: 'MCP_CALL', correlationId: 'c-2',
      message: `createPullRequest with Authorization: token ${token}`, reasoning: `retried with Bearer ${token}`,
      metadata: { appName: 'cart', token: 'opaque-1', password: 'hunter2', clientSecret: 'opaque-2', request: { headers: { Authorization: 'Basic dXNlcjpwYXNz' } } },
    });
    expect(lines).toHaveLength(1);
    for (const secret of [token, 'opaque-1', 'hunter2', 'opaque-2', 'dXNlcjpwYXNz']) expect(lines[0]).not.toContain(secret);
    const line = JSON.parse(lines[0]!) as AuditRecord & { audit: boolean };
    expect(line.metadata).toEqual({ appName: 'cart', token: REDACTED, password: REDACTED, clientSecret: REDACTED, request: { headers: { Authorization: REDACTED } } });
    expect(line.audit).toBe(true);
  });
});

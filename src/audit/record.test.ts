import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ACTION_TYPES,
  GENESIS_HASH,
  LEVELS,
  MODULES,
  REDACTED,
  auditIndexName,
  canonicalJson,
  hashRecord,
  newEventId,
  redact,
  redactString,
  sealRecord,
  verifyChain,
  type AuditInput,
  type AuditRecord,
} from './record.ts';

const T0 = Date.parse('2026-02-27T10:30:00.123Z');

function chain(inputs: readonly AuditInput[], from = GENESIS_HASH): AuditRecord[] {
  const out: AuditRecord[] = [];
  let prev = from;
  inputs.forEach((input, i) => {
    const record = sealRecord(input, prev, new Date(T0 + i * 1000));
    out.push(record);
    prev = record.hash;
  });
  return out;
}

const example: AuditInput = {
  level: 'INFO',
  module: 'MergeController',
  correlationId: '5b1c0d4e-8f2a-4c1b-9d3e-7a6b5c4d3e2f',
  actionType: 'INVARIANT_CHECK',
  message: 'Auto-merging rollback PR in staging',
  invariantsChecked: {
    I1_environment: 'PASS',
    I2_health_degraded: 'PASS',
    I3_replica_shortage: 'PASS',
    I4_persistence: 'PASS',
    I5_stable_previous: 'PASS',
    I6_ci_success: 'PASS',
    I7_no_conflicts: 'PASS',
    I8_branch_protection: 'PASS',
  },
  metadata: { appName: 'payment-service', prNumber: 42, environment: 'staging' },
};

function simpleInputs(n: number): AuditInput[] {
  return Array.from({ length: n }, (_, i) => ({ module: 'Reconciler', actionType: 'FSM_TRANSITION', correlationId: 'c', message: `step ${i}`, metadata: { appName: 'a', i } }));
}

describe('sealRecord', () => {
  it('has the keys of the SPEC §10 example, in its order', () => {
    const record = sealRecord(example, GENESIS_HASH, new Date(T0));
    expect(Object.keys(record)).toEqual([
      'timestamp', 'level', 'module', 'correlationId', 'actionType', 'message',
      'invariantsChecked', 'metadata', 'eventId', 'prevHash', 'hash',
    ]);
    expect(record.timestamp).toBe('2026-02-27T10:30:00.123Z');
    expect(record.metadata).toEqual({ appName: 'payment-service', prNumber: 42, environment: 'staging' });
    expect(record.prevHash).toBe(GENESIS_HASH);
    expect(record.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('hashes sha256(prevHash + canonical JSON of the record without its hash)', () => {
    const record = sealRecord({ ...example, reasoning: 'all invariants pass' }, 'ab'.repeat(32), new Date(T0));
    const { hash, ...rest } = record;
    const sorted = Object.fromEntries(Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : 1)));
    const canonical = JSON.stringify(sorted, (_k, v: unknown) =>
      v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v,
    );
    expect(hash).toBe(createHash('sha256').update('ab'.repeat(32) + canonical).digest('hex'));
  });

  it('fills defaults for operator-level records', () => {
    const record = sealRecord({ module: 'Operator', actionType: 'LEADER_ELECTED', message: 'Acquired leader lease' }, GENESIS_HASH, new Date(T0));
    expect(record).toMatchObject({ level: 'INFO', correlationId: '', metadata: {} });
    expect(record).not.toHaveProperty('reasoning');
    expect(record).not.toHaveProperty('invariantsChecked');
  });

  it('keeps a caller-supplied eventId, so a replay yields the same Elasticsearch _id', () => {
    const record = sealRecord({ ...example, eventId: 'pr-created-5b1c-42' }, GENESIS_HASH, new Date(T0));
    expect(record.eventId).toBe('pr-created-5b1c-42');
  });

  it('hashes what is stored: the record survives a JSON round trip unchanged', () => {
    const record = sealRecord({ ...example, metadata: { at: new Date(T0), n: Number.NaN, skip: undefined, nested: { b: 1, a: [1, undefined] } } }, GENESIS_HASH, new Date(T0));
    const back = JSON.parse(JSON.stringify(record)) as AuditRecord;
    expect(back).toEqual(record);
    expect(verifyChain([back]).ok).toBe(true);
  });

  it('exposes its vocabularies as constant arrays', () => {
    expect(LEVELS).toEqual(['INFO', 'WARN', 'ERROR']);
    expect(ACTION_TYPES).toContain('DEGRADATION_DETECTED');
    expect(ACTION_TYPES).toContain('LEADER_LOST');
    expect(MODULES).toContain('RollbackCandidateResolver');
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
  });

  it('does not depend on insertion order', () => {
    expect(canonicalJson({ x: 1, y: 2, '10': 3, '9': 4 })).toBe(canonicalJson({ '9': 4, y: 2, '10': 3, x: 1 }));
  });
});

describe('verifyChain', () => {
  const records = chain(simpleInputs(5));

  it('accepts an intact chain and reports its head', () => {
    expect(verifyChain(records)).toEqual({ ok: true, head: records[4]!.hash });
    expect(verifyChain([]).ok).toBe(true);
  });

  it('detects a modified field', () => {
    const tampered = records.map((r, i) => (i === 2 ? { ...r, message: 'nothing happened' } : r));
    expect(verifyChain(tampered)).toMatchObject({ ok: false, index: 2 });
  });

  it('detects a modified record whose own hash was recomputed', () => {
    const forged = { ...records[2]!, level: 'ERROR' as const };
    forged.hash = hashRecord(forged);
    const tampered = records.map((r, i) => (i === 2 ? forged : r));
    expect(verifyChain(tampered)).toMatchObject({ ok: false, index: 3 });
  });

  it('detects a dropped record', () => {
    expect(verifyChain([...records.slice(0, 1), ...records.slice(2)])).toMatchObject({ ok: false, index: 1 });
    expect(verifyChain(records.slice(1))).toMatchObject({ ok: false, index: 0 });
  });

  it('detects dropped newest records against a kept head', () => {
    expect(verifyChain(records.slice(0, 4), { head: records[4]!.hash })).toMatchObject({ ok: false, index: 4 });
  });

  it('detects reordered records', () => {
    const swapped = [records[0]!, records[2]!, records[1]!, records[3]!, records[4]!];
    expect(verifyChain(swapped)).toMatchObject({ ok: false, index: 1 });
  });

  it('detects an inserted record', () => {
    const stranger = sealRecord(simpleInputs(1)[0]!, records[1]!.hash, new Date(T0));
    expect(verifyChain([...records.slice(0, 2), stranger, ...records.slice(2)])).toMatchObject({ ok: false, index: 3 });
  });

  it('verifies a continuation from a given hash (the next day\'s file)', () => {
    const next = chain(simpleInputs(2), records[4]!.hash);
    expect(verifyChain(next, { from: records[4]!.hash }).ok).toBe(true);
    expect(verifyChain(next).ok).toBe(false);
  });
});

describe('verifyChain, property-based', () => {
  const input: fc.Arbitrary<AuditInput> = fc.record(
    {
      level: fc.constantFrom(...LEVELS),
      module: fc.constantFrom(...MODULES),
      correlationId: fc.oneof(fc.constant(''), fc.uuid()),
      actionType: fc.constantFrom(...ACTION_TYPES),
      message: fc.string(),
      reasoning: fc.string(),
      invariantsChecked: fc.dictionary(fc.constantFrom('I1_environment', 'I4_persistence', 'I6_ci_success'), fc.constantFrom('PASS' as const, 'FAIL' as const, 'UNKNOWN' as const)),
      metadata: fc.dictionary(fc.string({ minLength: 1 }), fc.jsonValue()),
      eventId: fc.string({ minLength: 1 }),
    },
    { requiredKeys: ['module', 'actionType', 'message'] },
  );

  type Tamper =
    | { kind: 'modify'; at: number; field: 'message' | 'level' | 'correlationId' | 'metadata' | 'timestamp' | 'prevHash' | 'hash' | 'eventId' }
    | { kind: 'drop'; at: number }
    | { kind: 'swap'; at: number }
    | { kind: 'insert'; at: number; extra: AuditInput }
    | { kind: 'duplicate'; at: number };

  const tamper: fc.Arbitrary<Tamper> = fc.oneof(
    fc.record({ kind: fc.constant('modify' as const), at: fc.nat(), field: fc.constantFrom('message', 'level', 'correlationId', 'metadata', 'timestamp', 'prevHash', 'hash', 'eventId') }),
    fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('swap' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), extra: input }),
    fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat() }),
  );

  function apply(records: AuditRecord[], t: Tamper): AuditRecord[] {
    const out = [...records];
    const at = t.at % out.length;
    switch (t.kind) {
      case 'modify': {
        const r = { ...out[at]! };
        if (t.field === 'level') r.level = r.level === 'ERROR' ? 'INFO' : 'ERROR';
        else if (t.field === 'metadata') r.metadata = { ...r.metadata, tampered: [r.metadata.tampered ?? null] };
        else r[t.field] = `${r[t.field]}x`;
        out[at] = r;
        return out;
      }
      case 'drop':
        out.splice(at, 1);
        return out;
      case 'swap': {
        // Needs two records; with one, swapping is a no-op, so drop instead.
        if (out.length < 2) return [];
        const j = Math.min(at, out.length - 2);
        [out[j], out[j + 1]] = [out[j + 1]!, out[j]!];
        return out;
      }
      case 'insert':
        // A well-formed forgery: it links to the record before it, so only the next link can tell.
        out.splice(at, 0, sealRecord(t.extra, out[at]!.prevHash, new Date(T0)));
        return out;
      case 'duplicate':
        out.splice(at, 0, out[at]!);
        return out;
    }
  }

  it('accepts every untouched chain and rejects every single tampering', () => {
    fc.assert(
      fc.property(fc.array(input, { minLength: 1, maxLength: 12 }), tamper, (inputs, t) => {
        const records = chain(inputs);
        const head = records.at(-1)!.hash;
        expect(verifyChain(records, { head }).ok).toBe(true);
        const json = JSON.parse(JSON.stringify(records)) as AuditRecord[];
        expect(verifyChain(json, { head }).ok).toBe(true);
        expect(verifyChain(apply(json, t), { head }).ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});

describe('redaction', () => {
  const secrets = {
    ghp: 'ghp_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8',
    gho: 'gho_' + 'Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2',
    ghs: 'ghs_' + '16C7e42F292c6912E7710c838347Ae178B4a',
    ghu: 'ghu_' + 'abcdefghijklmnopqrstuvwxyz0123456789',
    pat: 'github_pat_' + '11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV',
    bearer: 'eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl',
    basic: 'dXNlcjpodW50ZXIy',
    pem: '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----',
  };

  it.each([
    ['a classic GitHub token', `cloned with ${secrets.ghp} ok`, secrets.ghp],
    ['an OAuth token', `token=${secrets.gho}`, secrets.gho],
    ['an installation token', `using ${secrets.ghs}`, secrets.ghs],
    ['a user-to-server token', `${secrets.ghu}.`, secrets.ghu],
    ['a fine-grained token', `pat ${secrets.pat}`, secrets.pat],
    ['a bearer token', `sent Bearer ${secrets.bearer} to the API server`, secrets.bearer],
    ['an Authorization header', `Authorization: Basic ${secrets.basic}`, secrets.basic],
    ['an Authorization header in JSON', `{"authorization":"token abc123def456"}`, 'abc123def456'],
    ['a PEM private key', `key:\n${secrets.pem}\nend`, 'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun'],
    ['a truncated PEM private key', secrets.pem.slice(0, 120), 'MIIEowIBAAKCAQEA'],
    ['credentials in a URL', 'cloning https://x-access-token:s3cr3tvalue@github.com/org/repo.git', 's3cr3tvalue'],
  ])('masks %s', (_name, text, secret) => {
    const out = redactString(text);
    expect(out).not.toContain(secret);
    expect(out).toContain(REDACTED);
  });

  it('leaves ordinary text alone', () => {
    const text = 'Opened pull request #42 for payment-service: rollback to a1b2c3d (uptime 0.998)';
    expect(redactString(text)).toBe(text);
  });

  it('masks metadata values under secret-looking keys, at any depth', () => {
    const out = redact({
      appName: 'payment-service',
      token: 'opaque-value-1',
      clientSecret: 'opaque-value-2',
      password: 'opaque-value-3',
      apiKey: 'opaque-value-4',
      nested: { privateKey: 'opaque-value-5', api_key: 'opaque-value-6', headers: { Authorization: 'opaque-value-7' } },
      list: [{ githubToken: 'opaque-value-8' }],
    });
    expect(JSON.stringify(out)).not.toMatch(/opaque-value/);
    expect(out).toMatchObject({ appName: 'payment-service', token: REDACTED, nested: { privateKey: REDACTED } });
  });

  it('keeps a "__proto__" key as data', () => {
    const out = redact(JSON.parse('{"__proto__":{"polluted":1},"a":1}'));
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(JSON.stringify(out)).toBe('{"__proto__":{"polluted":1},"a":1}');
  });

  it('keeps errors readable and survives cycles', () => {
    const cyclic: Record<string, unknown> = { name: 'x' };
    cyclic.self = cyclic;
    expect(redact({ error: new Error(`401 for ${secrets.ghp}`), cyclic })).toEqual({
      error: { name: 'Error', message: `401 for ${REDACTED}` },
      cyclic: { name: 'x', self: '[Circular]' },
    });
  });

  it('never lets a secret into a sealed record', () => {
    const record = sealRecord(
      {
        module: 'PRGenerator',
        actionType: 'MCP_CALL',
        correlationId: 'c',
        message: `createPullRequest failed with Authorization: token ${secrets.ghs}`,
        reasoning: `retried with Bearer ${secrets.bearer}`,
        metadata: { appName: 'a', request: { headers: { authorization: `token ${secrets.ghs}` } }, key: secrets.pem, note: secrets.pat },
      },
      GENESIS_HASH,
      new Date(T0),
    );
    const line = JSON.stringify(record);
    for (const secret of [secrets.ghs, secrets.bearer, secrets.pat, 'MIIEowIBAAKCAQEA']) expect(line).not.toContain(secret);
    expect(verifyChain([record]).ok).toBe(true);
  });
});

describe('ids and names', () => {
  it('makes ULID event ids that sort by time', () => {
    const a = newEventId(new Date(T0));
    const b = newEventId(new Date(T0 + 1));
    expect(a).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(a < b).toBe(true);
    expect(newEventId(new Date(T0))).not.toBe(a);
  });

  it('names the daily index by the UTC day', () => {
    expect(auditIndexName(new Date('2026-02-27T23:59:59.999Z'))).toBe('ai-operator-audit-2026.02.27');
    expect(auditIndexName('2026-03-01T00:00:00.000Z')).toBe('ai-operator-audit-2026.03.01');
  });
});

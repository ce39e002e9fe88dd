// The seed runbook finds an attempt's invariant checks in the operator's logs:
//   kubectl logs … | jq 'select(.actionType=="INVARIANT_CHECK" and .correlationId=="…")'
// Run that filter with the real jq over the real operator's stdout after a staging
// rollback, and compare what it finds with the audit file.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import type { AuditRecord } from '../../src/audit/record.ts';
import { INVARIANT_IDS } from '../../src/fsm/record.ts';
import { givenRollbackScenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const JQ = '/usr/bin/jq';

/** The runbook's filter over a log file; lines that are not JSON (stderr, a stack trace) are skipped. */
function jq<T = Record<string, unknown>>(file: string, filter: string): T[] {
  const out = execFileSync(JQ, ['-c', '-R', `fromjson? | ${filter}`, file], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as T);
}

describe('audit records in the operator log', () => {
  it("the runbook's jq filter finds the attempt's invariant checks on stdout, each record once", async () => {
    // Given a staging app and the operator watching it
    const s = await givenRollbackScenario(stack, 'audit-log-lines', { environment: 'staging', startOperator: false }, stoppers);
    const operator = await s.startOperator();

    // When a broken release is rolled back: the PR opens, CI goes green, the operator merges and health returns
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const done = await s.inState('RollbackComplete', 90_000);
    const cid = done.correlationId;

    // Then the runbook's filter finds the attempt's INVARIANT_CHECK records, with all eight invariants
    const found = jq(operator.log, `select(.actionType=="INVARIANT_CHECK" and .correlationId=="${cid}")`);
    expect(found.length, `no INVARIANT_CHECK line for ${cid} in ${operator.log}\n${s.logs()}`).toBeGreaterThan(0);
    for (const line of found) {
      expect(line).toMatchObject({ audit: true, module: 'MergeController', correlationId: cid, actionType: 'INVARIANT_CHECK', metadata: { appName: s.app, environment: 'staging' } });
      expect(Object.keys(line.invariantsChecked as object).sort()).toEqual([...INVARIANT_IDS].sort());
    }

    // And stdout holds exactly the records of the audit file, once each, field for field (prevHash aside)
    const file = (await readAuditDir(join(s.dir, 'audit'))).filter((r) => r.correlationId === cid);
    const fileChecks = file.filter((r) => r.actionType === 'INVARIANT_CHECK');
    const view = ({ prevHash: _prev, ...rest }: AuditRecord) => rest;
    expect(found.map(({ audit: _a, replica: _r, ...rest }) => rest)).toEqual(fileChecks.map(view));
    const hashes = jq<string>(operator.log, `select(.audit == true and .correlationId=="${cid}") | .hash`);
    expect(hashes).toEqual(file.map((r) => r.hash));
  }, 180_000);
});

// The audit trail reaches Elasticsearch exactly once, whatever happens to
// Elasticsearch or to the operator (SPEC §10, §14.6). A private Elasticsearch
// (the shared one must keep running for the other files) is stopped for a whole
// staging rollback, and in the second case the operator is SIGKILLed with
// records still in its spool. Once Elasticsearch is back, every record of the
// spool is in Elasticsearch once, and the shipped `audit verify` command says
// the chain is intact.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Client } from '@elastic/elasticsearch';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { startElasticsearch, type ElasticsearchInstance } from '../../dev/stack/elasticsearch.ts';
import { freePort } from '../../dev/stack/process.ts';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import { readCheckpoint } from '../../src/audit/shipper.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, type OperatorHandle, type Scenario, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => {
  for (const stop of stoppers.splice(0).reverse()) await stop();
  // A test that failed with Elasticsearch stopped must not leave the next one without it.
  if (!es) await elasticsearchUp();
});
const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

// One private Elasticsearch for the file, stopped and started again on the same port and data.
let es: ElasticsearchInstance | undefined;
let esDir: string;
let esPort: number;
let url: string;
const elasticsearchUp = async () => { es = await startElasticsearch(esDir, { port: esPort }); };
const elasticsearchDown = async () => { await es?.process.stop(); es = undefined; };
beforeAll(async () => {
  esDir = mkdtempSync(join(tmpdir(), 'ai-operator-audit-es-'));
  esPort = await freePort();
  url = `http://127.0.0.1:${esPort}`;
  await elasticsearchUp();
}, 180_000);
afterAll(async () => {
  await elasticsearchDown();
  rmSync(esDir, { recursive: true, force: true });
});

const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, { ...options, env: { ELASTICSEARCH_URL: url, ...options.env } }, stoppers);
const pendingOf = async (operator: OperatorHandle) => Number(/^ai_operator_audit_fallback_pending (\d+)$/m.exec(await operator.metrics())?.[1]);

/** The documents of one spool's chain in Elasticsearch, after a refresh so that nothing shipped is missed. */
async function shippedDocuments(chainId: string): Promise<{ ids: string[]; correlationIds: string[] }> {
  const client = new Client({ node: url });
  try {
    await client.indices.refresh({ index: 'ai-operator-audit-*' });
    const found = await client.search<{ correlationId: string }>({ index: 'ai-operator-audit-*', query: { term: { chainId } }, size: 10_000, _source: ['correlationId'] });
    return { ids: found.hits.hits.map((h) => h._id!), correlationIds: found.hits.hits.map((h) => h._source!.correlationId) };
  } finally {
    await client.close();
  }
}

async function verifyCommand(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const command = ['node', 'src/cli.ts', 'audit', 'verify', ...args];
  const result = await run(process.execPath, command.slice(1), { cwd: ROOT, env: { PATH: process.env.PATH, ELASTICSEARCH_URL: url } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
  console.log(`$ ELASTICSEARCH_URL=${url} ${command.join(' ')}\n${result.stdout}${result.stderr}(exit ${result.code})`);
  return result;
}

/** Then: every record of the spool is in Elasticsearch, none twice, the attempt's among them, and the shipped command finds the chain intact. */
async function thenEverythingShippedOnce(s: Scenario, operator: OperatorHandle, correlationId: string): Promise<void> {
  const dir = join(s.dir, 'audit');
  await eventually('the spool drained', async () => (await pendingOf(operator)) === 0, 120_000, 500);
  const checkpoint = (await readCheckpoint(dir))!;
  const spool = await readAuditDir(dir);
  const shipped = await shippedDocuments(checkpoint.chainId);
  console.log(`spool ${dir}: ${spool.length} records (${spool.filter((r) => r.correlationId === correlationId).length} of attempt ${correlationId}); Elasticsearch chain ${checkpoint.chainId}: ${shipped.ids.length} documents, ${new Set(shipped.ids).size} distinct _id; checkpoint ${JSON.stringify(checkpoint)}`);
  expect(checkpoint.nextSeq).toBe(spool.length);
  expect(shipped.ids.length).toBe(spool.length);
  expect(new Set(shipped.ids).size).toBe(spool.length);
  expect(new Set(shipped.ids)).toEqual(new Set(spool.map((r) => r.eventId)));
  const attempt = spool.filter((r) => r.correlationId === correlationId);
  expect(attempt.filter((r) => r.actionType === 'PR_MERGED')).toHaveLength(1);
  expect(shipped.correlationIds.filter((c) => c === correlationId)).toHaveLength(attempt.length);

  const mine = await verifyCommand(['--since', '1h', '--chain', checkpoint.chainId]);
  expect(mine.code).toBe(0);
  expect(mine.stdout).toMatch(new RegExp(`^${spool.length} records, chain intact from ${spool[0]!.timestamp} to ${spool.at(-1)!.timestamp} \\(chain ${checkpoint.chainId}, seq 0\\.\\.${spool.length - 1}, from its genesis\\)\\n$`));
  // Every chain in this Elasticsearch (one per scenario of the file) verifies too.
  expect((await verifyCommand(['--since', '1h'])).code).toBe(0);
}

describe('the audit trail in Elasticsearch', () => {
  it('Elasticsearch stopped for a whole staging rollback: once it is back, every record is there once and the chain verifies', async () => {
    // Given a staging app and the operator shipping to a running Elasticsearch
    const s = await given('audit-es-down', { environment: 'staging', startOperator: false });
    const operator = await s.startOperator();
    const dir = join(s.dir, 'audit');
    await eventually('the start-up records shipped', async () => ((await readCheckpoint(dir))?.nextSeq ?? 0) > 0, 60_000, 250);

    // When Elasticsearch stops, and a bad release is rolled back from start to finish
    await elasticsearchDown();
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const done = await s.inState('RollbackComplete', 120_000);

    // Then the attempt's records wait in the spool, counted by the gauge (read after the spool: a transition's
    // record lands a moment after etcd shows it, and the gauge only grows while Elasticsearch is down)
    const attempt = (await readAuditDir(dir)).filter((r) => r.correlationId === done.correlationId);
    const waiting = await pendingOf(operator);
    console.log(`with Elasticsearch down after RollbackComplete: ai_operator_audit_fallback_pending ${waiting}; ${attempt.length} records of the attempt in the spool`);
    expect(waiting).toBeGreaterThanOrEqual(attempt.length);
    expect(attempt.length).toBeGreaterThan(0);

    // And when Elasticsearch is back, they all ship, once each
    await elasticsearchUp();
    await thenEverythingShippedOnce(s, operator, done.correlationId);
  }, 420_000);

  it('the operator SIGKILLed with a non-empty spool and restarted: nothing lost, nothing twice', async () => {
    // Given a staging app and the operator shipping to a running Elasticsearch
    const s = await given('audit-es-kill', { environment: 'staging', startOperator: false });
    const first = await s.startOperator();
    const dir = join(s.dir, 'audit');
    await eventually('the start-up records shipped', async () => ((await readCheckpoint(dir))?.nextSeq ?? 0) > 0, 60_000, 250);

    // When Elasticsearch stops, a bad release gets its rollback PR, and the operator is killed with records in its spool
    await elasticsearchDown();
    await s.release('v2', true);
    const pr = await s.firstPull();
    await eventually('records waiting in the spool', async () => (await pendingOf(first)) > 0, 30_000, 250);
    const before = await pendingOf(first);
    const exited = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGKILL');
    await exited;

    // And the operator restarts (Elasticsearch still down), finishes the attempt from etcd, then Elasticsearch comes back
    const second = await s.startOperator();
    const restartedWith = await eventually('the restarted operator counting the spool', async () => {
      const pending = await pendingOf(second).catch(() => Number.NaN);
      return Number.isNaN(pending) ? undefined : pending;
    }, 30_000, 250);
    console.log(`SIGKILLed with ai_operator_audit_fallback_pending ${before}; the restarted operator counts ${restartedWith} from the spool`);
    expect(restartedWith).toBeGreaterThanOrEqual(before);
    s.ci(pr.headSha, 'success');
    const done = await s.inState('RollbackComplete', 120_000);
    await elasticsearchUp();

    // Then every record of the spool, from both processes, is in Elasticsearch once, and the chain verifies
    await thenEverythingShippedOnce(s, second, done.correlationId);

    // And the command finds a record deleted from Elasticsearch, and is content again once it is back
    const { chainId } = (await readCheckpoint(dir))!;
    const victim = (await readAuditDir(dir)).find((r) => r.actionType === 'PR_MERGED')!;
    const client = new Client({ node: url });
    try {
      const [hit] = (await client.search({ index: 'ai-operator-audit-*', query: { ids: { values: [victim.eventId] } } })).hits.hits;
      await client.delete({ index: hit!._index, id: victim.eventId, refresh: true });
      const broken = await verifyCommand(['--since', '1h', '--chain', chainId]);
      expect(broken.code).toBe(1);
      expect(broken.stdout).toMatch(new RegExp(`^BROKEN chain ${chainId} at seq \\d+ \\(eventId [^,]+, [^)]+\\): 1 record missing \\(seq \\d+\\) after `));
      await client.create({ index: hit!._index, id: victim.eventId, document: hit!._source, refresh: true });
      expect((await verifyCommand(['--since', '1h', '--chain', chainId])).code).toBe(0);
    } finally {
      await client.close();
    }
  }, 420_000);
});

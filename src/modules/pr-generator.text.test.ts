// The PR body's text: durations a reader can use, and never an empty value.
import { describe, expect, it } from 'vitest';
import type { AttemptRecord } from '../fsm/record.ts';
import { Reason } from '../fsm/table.ts';
import { SETTINGS } from '../fsm/testing.ts';
import { pullRequestBody, type PullRequestContext } from './pr-generator.ts';

const at = '2026-11-22T00:00:00.000Z';
const record: AttemptRecord = {
  correlationId: '00000000-0000-4000-8000-000000000002', app: { namespace: 'argocd', name: 'web' }, environment: 'production',
  settings: { ...SETTINGS, intervalSeconds: 30, approvalTimeoutSeconds: 7200, healthRestorationSeconds: 300 },
  state: 'CandidateResolved', reason: Reason.StableCandidateFound, message: 'm', since: at, version: 3, createdAt: at,
  degradation: { firstSeenAt: at, checks: 3 },
  candidate: { revision: 'a'.repeat(40), shortRevision: 'aaaaaaa', uptime: 1, mode: 'metrics', evidence: '100.00% Healthy over 3.5 h deployed (minimum 99.00%)', ciState: 'success' },
  invariants: [], transitions: [],
};
const ctx: PullRequestContext = {
  record, checks: [{ at, status: 'Degraded' }], undone: [], invariants: [], files: [], affected: [],
  app: { ref: record.app, labels: {}, history: [], resources: [], source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/web', targetRevision: 'main' } },
};

/** Inline code spans with nothing in them, and values that were never there. */
const emptyValues = (text: string) => text.match(/``(?!`)|\bundefined\b|\bnull\b|\bNaN\b/g) ?? [];

describe('the PR body text', () => {
  it('states durations for humans', () => {
    const production = pullRequestBody(ctx);
    expect(production).toContain('every 30 s, from');
    expect(production).toContain('Without approval within 2 h the attempt aborts');
    const staging = pullRequestBody({ ...ctx, record: { ...record, environment: 'staging' } });
    expect(staging).toContain('waits for Argo CD to report Healthy for 5 min.');
  });

  it('never shows an empty value: no deployed revision, an empty commit message, an empty detail', () => {
    const body = pullRequestBody({
      ...ctx,
      undone: [{ sha: 'c'.repeat(40), message: '', author: 'bob', date: at, url: 'https://github.example/c' }],
      invariants: [{ id: 'I6_ci_success', result: 'UNKNOWN', detail: '', checkedAt: at }],
    });
    expect(emptyValues(body.replace(/```sh/g, '').replace(/```/g, ''))).toEqual([]);
    expect(body).toContain('(no message)');
    expect(body).toMatch(/\| `I6_ci_success` \| ❔ UNKNOWN \| — \|/);
    const unlisted = pullRequestBody(ctx);
    expect(emptyValues(unlisted.replace(/```sh/g, '').replace(/```/g, ''))).toEqual([]);
    expect(unlisted).toContain('(the commits undone since `aaaaaaa` could not be listed)');
  });
});

// Issue 18's acceptance on real Argo CD 3.6 (not the simulator), with real kustomize and helm on
// its repo server: the operator (src/main.ts as a process) rolls back what Argo CD deployed in the
// shapes users run — a Kustomize overlay over a shared base, a Helm chart with per-environment
// values files outside it, a multi-source app (chart + `$values` ref) of one repository, a monorepo
// where another app's commit lands after the bad one, and `targetRevision: HEAD` on a repository
// whose default branch is `master`. Each scenario runs to RollbackComplete, and the rollback PR's
// changed files are read back through the GitHub API (GET /repos/{o}/{r}/pulls/{n}/files).
// Machinery: support/argocd-real.ts (a repository per scenario in the GitHub simulator served by
// the git daemon, a namespace and an operator of its own, KWOK pods that crash-loop for ever when
// labelled as a broken release).
//
// Two apps that render the same shared files (the Kustomize base, the chart's templates) are
// governed by one RollbackPolicy each: staging's, and production's with `suspend: true` — production
// goes Degraded too, but only the staging attempt runs, so there is one rollback PR and its blast
// radius (production named, approval required) is what is under test. Kustomize (c) runs both
// policies: both attempts run, one opens the PR restoring the base and the other waits for it (never
// a second PR restoring the same files), and ends Idle when that PR's merge heals its app too.
import { stringify } from 'yaml';
import { describe, expect, it, vi } from 'vitest';
import { BROKEN_RELEASE, TEST_RELEASE_LABEL } from '../../dev/stack/kwok.ts';
import { appKey, type AttemptRecord } from '../../src/fsm/record.ts';
import { grantPatch, installApprovalPolicy } from './support/approvals.ts';
import {
  argocd, deployedRevision, deploymentYaml, givenGitOpsRepo, gitops, json, mergedAndRecovered, OWNER, PROGRESS_DEADLINE_SECONDS, secondsSince,
  sleep, until, untilDegradedAt, untilHealthyAt, untilUptime, type AppStatus, type GitOpsRepo, type Json, type PullFile, type SimPull,
} from './support/argocd-real.ts';
import { kubectl } from './support/kube.ts';

// Eight scenarios side by side (vitest's default is five at a time): each is mostly waiting on Argo CD.
vi.setConfig({ maxConcurrency: 8 });

const SCENARIO_TIMEOUT = 480_000;
const ALICE = 'alice@example.com';
const IMAGE = 'registry.example/shop';
const destination = (namespace: string) => ({ server: 'https://kubernetes.default.svc', namespace });
const automated = { automated: { prune: true, selfHeal: true }, syncOptions: ['CreateNamespace=true'] };
const detection = { detection: { intervalSeconds: 1, persistenceChecks: 3 }, healthRestorationSeconds: 5 };
/** Chosen by uptime from Argo CD's own argocd_app_info, as a user would: 0.6 leaves room for the seconds Progressing after a sync. */
const candidate = { candidate: { minUptime: 0.6, window: '1h' } };
const approvers = { merge: { approvers: { users: [ALICE] } } };

/** What the operator writes on a RollbackAttempt's status that these scenarios read (issue 18's fields included). */
interface AttemptStatus {
  phase?: string;
  candidate?: { revision?: string; paths?: string[] };
  rolledBackFrom?: string;
  affectedApplications?: Array<{ namespace: string; name: string; environment: string; paths: string[] }>;
  invariants?: Array<{ id: string; result: string; detail: string }>;
}

// ---- the repositories' files ----------------------------------------------------------------

/** The shared Kustomize base's Deployment: `release` marks its pods for KWOK (broken: crash-loop for ever). */
function baseDeployment(tag: string, release?: string): string {
  return stringify({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'shop' },
    spec: {
      replicas: 2, progressDeadlineSeconds: PROGRESS_DEADLINE_SECONDS, selector: { matchLabels: { app: 'shop' } },
      template: {
        metadata: { labels: { app: 'shop', ...(release ? { [TEST_RELEASE_LABEL]: release } : {}) } },
        spec: { containers: [{ name: 'shop', image: `${IMAGE}:${tag}` }] },
      },
    },
  });
}

/** An overlay over ../../base; `patches` (JSON 6902, on the Deployment) and `images` are the overlay's own changes. */
function overlay(environment: string, extra: { images?: Json[]; patches?: Json[][] } = {}): string {
  return stringify({
    apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization',
    resources: ['../../base'], namePrefix: `${environment}-`,
    ...(extra.images ? { images: extra.images } : {}),
    ...(extra.patches ? { patches: extra.patches.map((ops) => ({ target: { kind: 'Deployment' }, patch: stringify(ops) })) } : {}),
  });
}

const brokenLabelPatch = [{ op: 'add', path: `/spec/template/metadata/labels/${TEST_RELEASE_LABEL.replace('/', '~1')}`, value: BROKEN_RELEASE }];
/** Metadata only: no new pod template, no rollout. */
const ownerAnnotationPatch = [{ op: 'add', path: '/metadata/annotations', value: { 'shop.example/owner': 'team-shop' } }];

const KUSTOMIZE_V1 = {
  'README.md': '# shop\n',
  'apps/shop/base/kustomization.yaml': stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: ['deployment.yaml'] }),
  'apps/shop/base/deployment.yaml': baseDeployment('v1'),
  'apps/shop/overlays/staging/kustomization.yaml': overlay('staging'),
  'apps/shop/overlays/production/kustomization.yaml': overlay('production'),
};

/** The chart's Deployment template; `brokenTemplate` labels every pod a broken release whatever the values say. */
function chartTemplate(brokenTemplate = false): string {
  return [
    'apiVersion: apps/v1',
    'kind: Deployment',
    'metadata:',
    '  name: shop-{{ .Values.environment }}',
    'spec:',
    '  replicas: {{ .Values.replicas }}',
    `  progressDeadlineSeconds: ${PROGRESS_DEADLINE_SECONDS}`,
    '  selector:',
    '    matchLabels:',
    '      app: shop',
    '  template:',
    '    metadata:',
    '      labels:',
    '        app: shop',
    ...(brokenTemplate
      ? [`        ${TEST_RELEASE_LABEL}: ${BROKEN_RELEASE}`]
      : ['        {{- with .Values.release }}', `        ${TEST_RELEASE_LABEL}: {{ . | quote }}`, '        {{- end }}']),
    '    spec:',
    '      containers:',
    '        - name: shop',
    '          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"',
    '',
  ].join('\n');
}

/** A values file: the image tag, and (for a bad tag) KWOK's broken-release label riding with it. */
const values = (environment: string, tag: string, release?: string) => stringify({ environment, image: { tag }, ...(release ? { release } : {}) });

const CHART = {
  'charts/shop/Chart.yaml': stringify({ apiVersion: 'v2', name: 'shop', version: '0.1.0', appVersion: 'v1' }),
  'charts/shop/values.yaml': stringify({ environment: 'default', replicas: 2, image: { repository: IMAGE, tag: 'v1' }, release: '' }),
  'charts/shop/templates/deployment.yaml': chartTemplate(),
};

// ---- steps ------------------------------------------------------------------------------------

/** The rollback PR; fails at once when the operator refused the app's shape or aborted instead. */
async function prOrRefusal(repo: GitOpsRepo, app: string, policy: string, timeoutMs = 150_000): Promise<SimPull> {
  return firstPrOf(repo, { [app]: policy }, timeoutMs);
}

/** The first rollback PR of any of the apps (each named with its policy); fails at once when one was refused or its attempt aborted. */
async function firstPrOf(repo: GitOpsRepo, policyOf: Record<string, string>, timeoutMs = 150_000): Promise<SimPull> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const [app, policy] of Object.entries(policyOf)) {
      const refused = await repo.policyCondition(policy, 'ApplicationsRefused');
      if (refused?.status === 'True' && new RegExp(`\\b${app}\\b`).test(refused.message)) {
        throw new Error(`${app} was refused by policy ${policy}: ${refused.reason} ${JSON.stringify(refused.message)}`);
      }
      const aborted = (await repo.attempts(app)).find((r) => r.state === 'Abort');
      if (aborted) throw new Error(`${app}'s attempt aborted before any PR: ${aborted.reason} ${JSON.stringify(aborted.message)}`);
    }
    const pull = repo.pulls()[0];
    if (pull) return pull;
    await sleep(500);
  }
  throw new Error(`no rollback PR for ${Object.keys(policyOf).join(' or ')} within ${timeoutMs / 1000} s`);
}

/**
 * Watches the run: every PR of the repository (polled every 250 ms, from the simulator itself) and every change
 * of an attempt's state, reason or message, each on a timeline with the seconds since the watch began. `guard`
 * races a step with the first sight of a second PR, so that a scenario expecting one fails at once, saying so.
 */
function watchRollbacks(repo: GitOpsRepo): { seen: number[]; maxOpen(): number; timeline: string[]; guard<T>(step: Promise<T>): Promise<T>; stop(): Promise<void> } {
  const started = Date.now();
  const seen: number[] = [];
  const timeline: string[] = [];
  const last = new Map<string, string>();
  let maxOpen = 0;
  let stopped = false;
  let second!: (error: Error) => void;
  const secondSeen = new Promise<never>((_, reject) => { second = reject; });
  secondSeen.catch(() => {});
  const at = () => `+${secondsSince(started)}`;
  const poll = async () => {
    while (!stopped) {
      const pulls = repo.pulls();
      for (const p of pulls.filter((p) => !seen.includes(p.number))) {
        seen.push(p.number);
        timeline.push(`${at()} PR #${p.number} opened by ${p.user} from ${p.head}: ${p.title}`);
      }
      maxOpen = Math.max(maxOpen, pulls.filter((p) => p.state === 'open').length);
      if (seen.length > 1) {
        second(new Error(`a second rollback PR was opened: ${pulls.map((p) => `#${p.number} (${p.state}${p.merged ? ', merged' : ''}) from ${p.head}: ${p.title}`).join('; ')}\n${timeline.join('\n')}`));
      }
      try {
        for (const r of await repo.attempts()) {
          const line = `${r.state} ${r.reason}${r.pullRequest ? ` #${r.pullRequest.number}` : ''}: ${r.message}`;
          if (last.get(r.correlationId) !== line) {
            last.set(r.correlationId, line);
            timeline.push(`${at()} ${r.app.name} (${r.correlationId.slice(0, 8)}) ${line}`);
          }
        }
      } catch {
        // etcd unreadable for a moment: the next poll reads it
      }
      await sleep(250);
    }
  };
  const running = poll();
  return {
    seen, timeline, maxOpen: () => maxOpen,
    guard: (step) => { step.catch(() => {}); return Promise.race([step, secondSeen]); },
    stop: async () => { stopped = true; await running; },
  };
}

/** The PR's changed files by name, logged: what each case changed is part of its story. */
async function changedFiles(repo: GitOpsRepo, label: string, number: number): Promise<string[]> {
  const files: PullFile[] = await repo.pullFiles(number);
  console.log(`argocd-source-shapes ${label}: PR #${number} changes ${JSON.stringify(files.map((f) => `${f.status} ${f.filename} +${f.additions} -${f.deletions}`))}`);
  return files.map((f) => f.filename).sort();
}

/** The RollbackAttempt's status, what it says of the source set logged. */
async function attemptStatus(repo: GitOpsRepo, record: AttemptRecord): Promise<AttemptStatus> {
  const status = ((await repo.attemptObject(record)).status ?? {}) as AttemptStatus;
  const { phase, candidate, rolledBackFrom, affectedApplications } = status;
  console.log(`argocd-source-shapes ${repo.namespace}/${record.app.name}: RollbackAttempt status ${JSON.stringify({ phase, candidate, rolledBackFrom, affectedApplications })}`);
  return status;
}

/** Approvals written as the approver, admitted by the shipped ValidatingAdmissionPolicy (as argocd-real's production scenario). */
async function givenApprovals(repo: GitOpsRepo): Promise<{ env: Record<string, string>; approve(record: AttemptRecord): Promise<void> }> {
  const { bindingName } = await installApprovalPolicy(gitops, repo.namespace);
  await grantPatch(gitops, repo.namespace, ALICE);
  return {
    env: { APPROVAL_POLICY_BINDING_NAME: bindingName, MERGE_APPROVAL_TIMEOUT: '600' },
    approve: async (record) => {
      const name = (await repo.attemptObject(record)).metadata.name as string;
      const result = await kubectl(gitops, ['annotate', '--overwrite', `--as=${ALICE}`, 'rollbackattempt', name, '-n', repo.namespace, `ai-operator.io/approve=${ALICE}`]);
      expect(result.code, result.stderr).toBe(0);
    },
  };
}

/**
 * The two apps of one shared source (a Kustomize base, a chart), staging and production, from
 * `paths`; each Synced and Healthy at the first commit; a policy each (production's suspended unless said).
 */
async function givenStagingAndProduction(repo: GitOpsRepo, sources: { staging: Json; production: Json }, options: { suspendProduction?: boolean } = {}): Promise<void> {
  for (const environment of ['staging', 'production'] as const) {
    await repo.createApplication(`shop-${environment}`, {
      source: { repoURL: repo.repoURL, targetRevision: 'main', ...sources[environment] },
      destination: destination(`${repo.target}-${environment}`), syncPolicy: automated,
    }, { 'ai-operator.enabled': 'true', environment });
  }
  await repo.createPolicy('staging', { applications: ['shop-staging'], environment: 'staging', ...detection, ...candidate, ...approvers });
  await repo.createPolicy('production', { applications: ['shop-production'], environment: 'production', ...(options.suspendProduction ?? true ? { suspend: true } : {}), ...detection, ...candidate, ...approvers });
  const t = Date.now();
  await Promise.all(['shop-staging', 'shop-production'].map((app) => untilHealthyAt(repo, app, repo.firstCommit)));
  console.log(`argocd-source-shapes ${repo.namespace}: shop-staging and shop-production Synced+Healthy in ${secondsSince(t)}`);
}

/** CI green on the PR's head: the attempt (staging's unless said) comes to wait for an approver, and five seconds later the PR is still open. */
async function untilWaitingForApproval(repo: GitOpsRepo, pr: SimPull, app = 'shop-staging'): Promise<AttemptRecord> {
  repo.ci(pr.headSha);
  const settled = await until(`${app} waiting for approval (or merged without one)`, async () => (await repo.attempts(app))[0],
    (r) => r !== undefined && r.state !== 'PRCreated' && r.state !== 'CandidateResolved' && r.state !== 'DegradationDetected', 60_000, 250);
  await sleep(5000);
  expect(repo.pulls()[0], `the PR after 5 s of green CI (the attempt went ${settled!.state} ${settled!.reason})`).toMatchObject({ number: pr.number, merged: false, state: 'open' });
  const [record] = await repo.attempts(app);
  expect(record?.state).toBe('AwaitingMergeApproval');
  return record!;
}

/** The live Deployment's image and KWOK release label. */
async function live(namespace: string, name: string): Promise<{ image: string; release?: string; annotations: Record<string, string> }> {
  const d = await json<{ metadata: { annotations?: Record<string, string> }; spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: Array<{ image: string }> } } } }>(['get', 'deployment', '-n', namespace, name]);
  return { image: d.spec.template.spec.containers[0]!.image, release: d.spec.template.metadata.labels[TEST_RELEASE_LABEL], annotations: d.metadata.annotations ?? {} };
}

/** Runs a scenario with its repository; on failure the message carries the attempts and the operator's log. */
async function scenario(name: string, files: Record<string, string>, body: (repo: GitOpsRepo) => Promise<void>, options: { defaultBranch?: string } = {}): Promise<void> {
  const started = Date.now();
  const repo = await givenGitOpsRepo({ name, files, message: 'v1', ...options });
  try {
    await body(repo);
    console.log(`argocd-source-shapes ${name}: scenario took ${secondsSince(started)}`);
  } catch (error) {
    console.log(`argocd-source-shapes ${name}: FAILED after ${secondsSince(started)}: ${(error as Error).message.split('\n')[0]}`);
    throw new Error(`${(error as Error).message}\n${await repo.logs()}`, { cause: error });
  } finally {
    await repo.stop();
  }
}

describe('rolling back what Argo CD deployed, in the shapes users run (issue 18, real Argo CD 3.6 with kustomize and helm)', () => {
  it.concurrent('Kustomize (a): a bad change in the staging overlay → the overlay alone restored, auto-merged, RollbackComplete', async ({ expect }) => {
    await scenario('kustomize-overlay', KUSTOMIZE_V1, async (repo) => {
      // Given shop-staging and shop-production, overlays over one base, Healthy at v1
      await givenStagingAndProduction(repo, { staging: { path: 'apps/shop/overlays/staging' }, production: { path: 'apps/shop/overlays/production' } });
      await untilUptime(repo, 'shop-staging', 0.8);
      await repo.startOperator();

      // When the staging overlay alone overrides the image with a release whose pods crash-loop
      const bad = await repo.push({
        'apps/shop/overlays/staging/kustomization.yaml': overlay('staging', { images: [{ name: IMAGE, newTag: 'v2' }], patches: [brokenLabelPatch] }),
      }, 'staging: shop v2');
      await repo.refresh('shop-staging');
      await untilDegradedAt(repo, 'shop-staging', bad);

      // Then the PR changes the overlay alone, is merged without anyone, and Argo CD deploys v1 again
      const pr = await prOrRefusal(repo, 'shop-staging', 'staging');
      expect.soft(await changedFiles(repo, 'kustomize (a)', pr.number)).toEqual(['apps/shop/overlays/staging/kustomization.yaml']);
      const { record } = await mergedAndRecovered(repo, 'shop-staging');
      expect(record.merge?.auto).toBe(true);
      expect(record.approval).toBeUndefined();
      expect(record.candidate?.revision).toBe(repo.firstCommit);
      const status = await attemptStatus(repo, record);
      expect.soft(status.rolledBackFrom).toBe(bad);
      expect.soft(status.candidate?.paths).toEqual(expect.arrayContaining(['apps/shop/overlays/staging', 'apps/shop/base']));
      expect.soft(status.affectedApplications ?? []).toEqual([]);
      expect(await live(`${repo.target}-staging`, 'staging-shop')).toMatchObject({ image: `${IMAGE}:v1`, release: undefined });
      expect(await repo.attempts('shop-production')).toEqual([]);
    });
  }, SCENARIO_TIMEOUT);

  it.concurrent('Kustomize (b): a bad change in the shared base after an innocent overlay commit → the base alone restored (the overlay commit kept), production named as affected, the PR waits for an approver', async ({ expect }) => {
    await scenario('kustomize-base', KUSTOMIZE_V1, async (repo) => {
      await givenStagingAndProduction(repo, { staging: { path: 'apps/shop/overlays/staging' }, production: { path: 'apps/shop/overlays/production' } });
      const approvals = await givenApprovals(repo);
      await untilUptime(repo, 'shop-staging', 0.8);
      // Given v2: an innocent annotation in the staging overlay, deployed and Healthy for a while
      const v2 = await repo.push({ 'apps/shop/overlays/staging/kustomization.yaml': overlay('staging', { patches: [ownerAnnotationPatch] }) }, 'staging: owner annotation');
      await repo.refresh('shop-staging');
      await until('shop-staging deployed v2', () => repo.status('shop-staging'), (s) => deployedRevision(s) === v2 && s.health?.status === 'Healthy', 90_000);
      await untilUptime(repo, 'shop-staging', 0.8);
      await repo.startOperator(approvals.env);

      // When v3 bumps the base's image to a release whose pods crash-loop: both overlays render it
      const v3 = await repo.push({ 'apps/shop/base/deployment.yaml': baseDeployment('v3', BROKEN_RELEASE) }, 'base: shop v3');
      await repo.refresh('shop-staging');
      await repo.refresh('shop-production');
      await Promise.all([untilDegradedAt(repo, 'shop-staging', v3), untilDegradedAt(repo, 'shop-production', v3)]);

      // Then the staging attempt's PR restores the base alone, naming production as affected
      const pr = await prOrRefusal(repo, 'shop-staging', 'staging');
      expect.soft(await changedFiles(repo, 'kustomize (b)', pr.number)).toEqual(['apps/shop/base/deployment.yaml']);
      expect.soft(pr.body).toContain('shop-production');
      expect.soft(pr.body).toContain('apps/shop/base');
      // And, CI green on it, it is not merged: it waits for an approver, as a production rollback does
      const waiting = await untilWaitingForApproval(repo, pr);
      const before = await attemptStatus(repo, waiting);
      console.log(`argocd-source-shapes kustomize (b): waiting for approval, I1 ${JSON.stringify(before.invariants?.find((i) => i.id === 'I1_environment'))}, affected ${JSON.stringify(before.affectedApplications)}`);
      expect.soft(before.invariants?.find((i) => i.id === 'I1_environment')).toMatchObject({ result: 'FAIL', detail: expect.stringContaining('also changes shop-production (production): apps/shop/base') });
      expect.soft(before.affectedApplications).toEqual([{ namespace: repo.namespace, name: 'shop-production', environment: 'production', paths: ['apps/shop/base'] }]);

      // When alice approves, it merges; staging and production both deploy the restored base
      const { record, pull } = await mergedAndRecovered(repo, 'shop-staging', { approve: () => approvals.approve(waiting) });
      expect(record).toMatchObject({ approval: { approvedBy: ALICE }, candidate: { revision: v2 } });
      expect(record.transitions.find((t) => t.to === 'RollbackMerged')?.reason).toBe('ApprovedAndMerged');
      const status = await attemptStatus(repo, record);
      expect.soft(status.rolledBackFrom).toBe(v3);
      expect.soft(status.candidate?.paths).toEqual(expect.arrayContaining(['apps/shop/overlays/staging', 'apps/shop/base']));
      // The innocent v2 is kept: the overlay still carries its annotation, the base is v1's again
      expect(await repo.fileAt('main', 'apps/shop/overlays/staging/kustomization.yaml')).toBe(await repo.fileAt(v2, 'apps/shop/overlays/staging/kustomization.yaml'));
      expect(await repo.fileAt('main', 'apps/shop/base/deployment.yaml')).toBe(baseDeployment('v1'));
      expect(await live(`${repo.target}-staging`, 'staging-shop')).toMatchObject({ image: `${IMAGE}:v1`, release: undefined, annotations: { 'shop.example/owner': 'team-shop' } });
      await untilHealthyAt(repo, 'shop-production', pull.mergeCommitSha!);
      expect(await repo.attempts('shop-production')).toEqual([]);
    });
  }, SCENARIO_TIMEOUT);

  it.concurrent('Kustomize (c): a bad change in the shared base, both policies active → one rollback PR (whichever attempt opens it), the other attempt waits for it; approved and merged, both apps Healthy', async ({ expect }) => {
    await scenario('kustomize-shared', KUSTOMIZE_V1, async (repo) => {
      const apps = ['shop-staging', 'shop-production'];
      // Given shop-staging and shop-production over one base, Healthy at v1, each governed by an active policy (alice approves in both)
      await givenStagingAndProduction(repo, { staging: { path: 'apps/shop/overlays/staging' }, production: { path: 'apps/shop/overlays/production' } }, { suspendProduction: false });
      const approvals = await givenApprovals(repo);
      await Promise.all(apps.map((app) => untilUptime(repo, app, 0.8)));
      const watch = watchRollbacks(repo);
      try {
        await repo.startOperator(approvals.env);

        // When v2 bumps the base's image to a release whose pods crash-loop: both overlays render it, both apps go Degraded
        const bad = await repo.push({ 'apps/shop/base/deployment.yaml': baseDeployment('v2', BROKEN_RELEASE) }, 'base: shop v2');
        const pushed = Date.now();
        for (const app of apps) await repo.refresh(app);
        await watch.guard(Promise.all(apps.map((app) => untilDegradedAt(repo, app, bad))));

        // Then one attempt (either) opens a PR restoring the base
        const pr = await watch.guard(firstPrOf(repo, { 'shop-staging': 'staging', 'shop-production': 'production' }));
        const records = await watch.guard(until(`the attempt that owns #${pr.number}`, () => repo.attempts(), (rs) => rs.some((r) => r.pullRequest?.number === pr.number), 30_000));
        const owner = records.find((r) => r.pullRequest?.number === pr.number)!.app.name;
        const other = apps.find((app) => app !== owner)!;
        console.log(`argocd-source-shapes kustomize (c): push → PR #${pr.number} by ${owner}'s attempt in ${secondsSince(pushed)}: ${pr.title}`);
        expect.soft(await changedFiles(repo, 'kustomize (c)', pr.number)).toEqual(['apps/shop/base/deployment.yaml']);

        // And the other attempt waits for it, opening none
        const waitingMessage = `waiting for rollback pull request #${pr.number} (${pr.title}), which already changes files of this app's source set: no second pull request restoring them is opened`;
        const waiting = (await watch.guard(until(`${other}'s attempt waiting for #${pr.number}`, async () => (await repo.attempts(other))[0],
          (r) => r !== undefined && (r.message === waitingMessage || !['DegradationDetected', 'CandidateResolved'].includes(r.state)), 90_000, 250)))!;
        expect(waiting, `${other}'s attempt`).toMatchObject({ state: 'CandidateResolved', message: waitingMessage });
        const waitingObject = await watch.guard(until(`${other}'s RollbackAttempt saying it waits`, () => repo.attemptObject(waiting), (o) => o.status?.message === waitingMessage, 30_000));
        console.log(`argocd-source-shapes kustomize (c): ${other}'s RollbackAttempt ${waitingObject.metadata.name}: ${JSON.stringify({ phase: waitingObject.status.phase, reason: waitingObject.status.reason, message: waitingObject.status.message })}`);
        expect(waitingObject.status).toMatchObject({ phase: 'CandidateResolved', message: waitingMessage });

        // And, CI green on the PR, it waits for an approver: production's own rule, or staging's rollback changing production
        const awaiting = await watch.guard(untilWaitingForApproval(repo, pr, owner));
        const before = await attemptStatus(repo, awaiting);
        const i1 = before.invariants?.find((i) => i.id === 'I1_environment');
        console.log(`argocd-source-shapes kustomize (c): ${owner} waiting for approval, I1 ${JSON.stringify(i1)}, affected ${JSON.stringify(before.affectedApplications)}`);
        if (owner === 'shop-staging') expect.soft(i1).toMatchObject({ result: 'FAIL', detail: expect.stringContaining('also changes shop-production (production): apps/shop/base') });
        expect((await repo.attempts(other))[0]).toMatchObject({ correlationId: waiting.correlationId, state: 'CandidateResolved', message: waitingMessage });

        // When alice approves it (on the attempt that owns it), it merges, and Argo CD deploys the restored base to both apps
        const { record, pull } = await watch.guard(mergedAndRecovered(repo, owner, { approve: () => approvals.approve(awaiting) }));
        expect(record).toMatchObject({ state: 'RollbackComplete', approval: { approvedBy: ALICE }, candidate: { revision: repo.firstCommit } });
        expect(record.transitions.find((t) => t.to === 'RollbackMerged')?.reason).toBe('ApprovedAndMerged');
        await watch.guard(untilHealthyAt(repo, other, pull.mergeCommitSha!));

        // Then the waiting attempt ends Idle: the other's merge restored its health
        const ended = (await watch.guard(until(`${other}'s attempt done waiting`, async () => (await repo.attempts(other)).find((r) => r.correlationId === waiting.correlationId),
          (r) => r !== undefined && r.state !== 'CandidateResolved', 60_000, 250)))!;
        const endedObject = await until(`${other}'s RollbackAttempt at ${ended.state}`, () => repo.attemptObject(ended), (o) => o.status?.phase === ended.state, 30_000);
        console.log(`argocd-source-shapes kustomize (c): ${other}'s RollbackAttempt at the end: ${JSON.stringify({ phase: endedObject.status.phase, reason: endedObject.status.reason, message: endedObject.status.message })}`);
        // (soft: what else the run shows is checked too, and the test fails all the same)
        expect.soft(ended, `${other}'s attempt after #${pr.number} merged`).toMatchObject({ state: 'Idle', reason: 'HealthRestoredBeforeMerge' });
        expect.soft(endedObject.status, `${other}'s RollbackAttempt after #${pr.number} merged`).toMatchObject({ phase: 'Idle', reason: 'HealthRestoredBeforeMerge' });
        expect((await repo.attempts(other)).map((r) => r.correlationId)).toEqual([waiting.correlationId]);
        expect(await repo.fileAt('main', 'apps/shop/base/deployment.yaml')).toBe(baseDeployment('v1'));
        expect(await live(`${repo.target}-staging`, 'staging-shop')).toMatchObject({ image: `${IMAGE}:v1`, release: undefined });
        expect(await live(`${repo.target}-production`, 'production-shop')).toMatchObject({ image: `${IMAGE}:v1`, release: undefined });
        // Over the whole run, one rollback PR in the repository, never two open at once
        expect(repo.pulls().map((p) => p.number)).toEqual([pr.number]);
        expect(watch.seen).toEqual([pr.number]);
        expect(watch.maxOpen()).toBe(1);
        console.log(`argocd-source-shapes kustomize (c): push → both apps Healthy, ${owner} RollbackComplete, ${other} Idle in ${secondsSince(pushed)}`);
      } finally {
        await watch.stop();
        console.log(`argocd-source-shapes kustomize (c): timeline\n${watch.timeline.join('\n')}`);
      }
    });
  }, SCENARIO_TIMEOUT);

  const helmFiles = {
    ...CHART,
    'envs/shop/values-staging.yaml': values('staging', 'v1'),
    'envs/shop/values-production.yaml': values('production', 'v1'),
  };
  const helmSources = {
    staging: { path: 'charts/shop', helm: { valueFiles: ['../../envs/shop/values-staging.yaml'] } },
    production: { path: 'charts/shop', helm: { valueFiles: ['../../envs/shop/values-production.yaml'] } },
  };

  it.concurrent('Helm (a): a bad image tag in the staging values file (outside the chart) → that file alone restored, auto-merged, RollbackComplete', async ({ expect }) => {
    await scenario('helm-values', helmFiles, async (repo) => {
      await givenStagingAndProduction(repo, helmSources);
      await untilUptime(repo, 'shop-staging', 0.8);
      await repo.startOperator();
      const bad = await repo.push({ 'envs/shop/values-staging.yaml': values('staging', 'v2', BROKEN_RELEASE) }, 'staging: shop v2');
      await repo.refresh('shop-staging');
      await untilDegradedAt(repo, 'shop-staging', bad);

      const pr = await prOrRefusal(repo, 'shop-staging', 'staging');
      expect.soft(await changedFiles(repo, 'helm (a)', pr.number)).toEqual(['envs/shop/values-staging.yaml']);
      const { record } = await mergedAndRecovered(repo, 'shop-staging');
      expect(record.merge?.auto).toBe(true);
      expect(record.candidate?.revision).toBe(repo.firstCommit);
      const status = await attemptStatus(repo, record);
      expect.soft(status.rolledBackFrom).toBe(bad);
      expect.soft(status.candidate?.paths).toEqual(expect.arrayContaining(['charts/shop', 'envs/shop/values-staging.yaml']));
      expect.soft(status.affectedApplications ?? []).toEqual([]);
      expect(await repo.fileAt('main', 'envs/shop/values-staging.yaml')).toBe(values('staging', 'v1'));
      expect(await live(`${repo.target}-staging`, 'shop-staging')).toMatchObject({ image: `${IMAGE}:v1`, release: undefined });
    });
  }, SCENARIO_TIMEOUT);

  it.concurrent('Helm (b): a bad template change in the chart → the template restored, production named as affected, approval required', async ({ expect }) => {
    await scenario('helm-template', helmFiles, async (repo) => {
      await givenStagingAndProduction(repo, helmSources);
      const approvals = await givenApprovals(repo);
      await untilUptime(repo, 'shop-staging', 0.8);
      await repo.startOperator(approvals.env);
      const bad = await repo.push({ 'charts/shop/templates/deployment.yaml': chartTemplate(true) }, 'chart: release label');
      await repo.refresh('shop-staging');
      await repo.refresh('shop-production');
      await Promise.all([untilDegradedAt(repo, 'shop-staging', bad), untilDegradedAt(repo, 'shop-production', bad)]);

      const pr = await prOrRefusal(repo, 'shop-staging', 'staging');
      expect.soft(await changedFiles(repo, 'helm (b)', pr.number)).toEqual(['charts/shop/templates/deployment.yaml']);
      expect.soft(pr.body).toContain('shop-production');
      const waiting = await untilWaitingForApproval(repo, pr);
      const before = await attemptStatus(repo, waiting);
      console.log(`argocd-source-shapes helm (b): waiting for approval, I1 ${JSON.stringify(before.invariants?.find((i) => i.id === 'I1_environment'))}, affected ${JSON.stringify(before.affectedApplications)}`);
      expect.soft(before.invariants?.find((i) => i.id === 'I1_environment')).toMatchObject({ result: 'FAIL', detail: expect.stringContaining('also changes shop-production (production): charts/shop') });
      expect.soft(before.affectedApplications).toEqual([{ namespace: repo.namespace, name: 'shop-production', environment: 'production', paths: ['charts/shop'] }]);

      const { record, pull } = await mergedAndRecovered(repo, 'shop-staging', { approve: () => approvals.approve(waiting) });
      expect(record).toMatchObject({ approval: { approvedBy: ALICE }, candidate: { revision: repo.firstCommit } });
      expect.soft((await attemptStatus(repo, record)).rolledBackFrom).toBe(bad);
      expect(await repo.fileAt('main', 'charts/shop/templates/deployment.yaml')).toBe(chartTemplate());
      await untilHealthyAt(repo, 'shop-production', pull.mergeCommitSha!);
    });
  }, SCENARIO_TIMEOUT);

  it.concurrent('Multi-source in one repository (a chart path + a `$values` ref): a bad values change → the values file restored, auto-merged, RollbackComplete', async ({ expect }) => {
    await scenario('multi-source', { ...CHART, 'envs/staging/values.yaml': values('staging', 'v1') }, async (repo) => {
      await repo.createApplication('shop-staging', {
        sources: [
          { repoURL: repo.repoURL, targetRevision: 'main', path: 'charts/shop', helm: { valueFiles: ['$values/envs/staging/values.yaml'] } },
          { repoURL: repo.repoURL, targetRevision: 'main', ref: 'values' },
        ],
        destination: destination(`${repo.target}-staging`), syncPolicy: automated,
      }, { 'ai-operator.enabled': 'true', environment: 'staging' });
      await repo.createPolicy('staging', { environment: 'staging', ...detection, ...candidate });
      await untilHealthyAt(repo, 'shop-staging', repo.firstCommit);
      await untilUptime(repo, 'shop-staging', 0.8);
      await repo.startOperator();

      const bad = await repo.push({ 'envs/staging/values.yaml': values('staging', 'v2', BROKEN_RELEASE) }, 'staging: shop v2');
      await repo.refresh('shop-staging');
      const degraded: AppStatus = await untilDegradedAt(repo, 'shop-staging', bad);
      // For the closing note: what real Argo CD writes for a multi-source app (sync.revisions, history[].revisions, sources)
      console.log(`argocd-source-shapes multi-source: the Application status real Argo CD wrote at Degraded:\n${JSON.stringify(degraded, null, 2)}`);
      expect(degraded.sync?.revisions).toEqual([bad, bad]);
      expect(degraded.history?.map((h) => h.revisions)).toEqual([[repo.firstCommit, repo.firstCommit], [bad, bad]]);

      const pr = await prOrRefusal(repo, 'shop-staging', 'staging');
      expect.soft(await changedFiles(repo, 'multi-source', pr.number)).toEqual(['envs/staging/values.yaml']);
      const { record } = await mergedAndRecovered(repo, 'shop-staging');
      expect(record.merge?.auto).toBe(true);
      expect(record.candidate?.revision).toBe(repo.firstCommit);
      const status = await attemptStatus(repo, record);
      expect.soft(status.rolledBackFrom).toBe(bad);
      expect.soft(status.candidate?.paths).toEqual(expect.arrayContaining(['charts/shop', 'envs/staging/values.yaml']));
      expect(await repo.fileAt('main', 'envs/staging/values.yaml')).toBe(values('staging', 'v1'));
      expect(await live(`${repo.target}-staging`, 'shop-staging')).toMatchObject({ image: `${IMAGE}:v1`, release: undefined });
    });
  }, SCENARIO_TIMEOUT);

  it.concurrent('Monorepo: another app\'s commit lands after the bad one (sync.revision is not the bad commit) → apps/a restored to the good tree, the bad commit recorded as rolled back from', async ({ expect }) => {
    const files = { 'apps/a/deployment.yaml': deploymentYaml('a', undefined, 'v1'), 'apps/b/deployment.yaml': deploymentYaml('b', undefined, 'v1') };
    await scenario('monorepo', files, async (repo) => {
      for (const app of ['a', 'b']) {
        await repo.createApplication(app, {
          source: { repoURL: repo.repoURL, targetRevision: 'main', path: `apps/${app}` }, destination: destination(`${repo.target}-${app}`), syncPolicy: automated,
        }, { 'ai-operator.enabled': 'true', environment: 'staging' });
      }
      await repo.createPolicy('staging', { environment: 'staging', ...detection, ...candidate });
      await Promise.all(['a', 'b'].map((app) => untilHealthyAt(repo, app, repo.firstCommit)));
      await untilUptime(repo, 'a', 0.8);

      // Given a bad commit in apps/a (which also adds a file: restoring the good tree removes it), deployed, and
      // then b's commit on the same branch, compared by Argo CD for a too
      const debug = stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a-debug' }, data: { level: 'trace' } });
      const bad = await repo.push({ 'apps/a/deployment.yaml': deploymentYaml('a', undefined, 'v2', { label: BROKEN_RELEASE }), 'apps/a/debug.yaml': debug }, 'a: v2, with debug settings');
      await repo.refresh('a');
      await until('a deployed the bad commit', () => repo.status('a'), (s) => deployedRevision(s) === bad, 60_000, 250);
      const other = await repo.push({ 'apps/b/deployment.yaml': deploymentYaml('b', undefined, 'v2') }, 'b: v2');
      await repo.refresh('a');
      await repo.refresh('b');
      await untilHealthyAt(repo, 'b', other);
      const degraded = await untilDegradedAt(repo, 'a', other);
      console.log(`argocd-source-shapes monorepo: a at Degraded: sync.revision ${degraded.sync?.revision?.slice(0, 7)} (b's commit), history ${JSON.stringify(degraded.history?.map((h) => h.revision?.slice(0, 7)))}`);
      expect(deployedRevision(degraded)).toBe(bad);
      // When the operator looks (started now, so the first thing it sees is sync.revision = b's commit)
      await repo.startOperator();

      // Then the PR restores apps/a alone to the good tree, and the bad commit is the one rolled back from
      const pr = await prOrRefusal(repo, 'a', 'staging');
      expect.soft(await changedFiles(repo, 'monorepo', pr.number)).toEqual(['apps/a/debug.yaml', 'apps/a/deployment.yaml']);
      const { record } = await mergedAndRecovered(repo, 'a');
      expect(record.candidate?.revision).toBe(repo.firstCommit);
      const remembered = (await repo.store.loadApp(appKey(record.app, argocd.namespace))).rolledBackFrom;
      const status = await attemptStatus(repo, record);
      console.log(`argocd-source-shapes monorepo: currentRevision ${record.currentRevision?.slice(0, 7)}, status.rolledBackFrom ${status.rolledBackFrom?.slice(0, 7)}, remembered as rolled back from ${JSON.stringify(remembered.map((s) => s.slice(0, 7)))} (bad ${bad.slice(0, 7)}, b's ${other.slice(0, 7)})`);
      expect.soft(status.rolledBackFrom).toBe(bad);
      expect.soft(remembered).toEqual([bad]);
      expect(await repo.fileAt('main', 'apps/a/deployment.yaml')).toBe(deploymentYaml('a', undefined, 'v1'));
      expect(await repo.fileAt('main', 'apps/a/debug.yaml')).toBeNull();
      expect(await repo.fileAt('main', 'apps/b/deployment.yaml')).toBe(deploymentYaml('b', undefined, 'v2'));
      expect(await repo.attempts('b')).toEqual([]);
    });
  }, SCENARIO_TIMEOUT);

  it.concurrent('`targetRevision: HEAD` on a repository whose default branch is master (a stale main beside it) → the PR targets master, RollbackComplete', async ({ expect }) => {
    await scenario('head-master', { 'apps/web/deployment.yaml': deploymentYaml('web', undefined, 'v1') }, async (repo) => {
      // Given a stale main: branched from the first commit, one commit of its own, never deployed
      await repo.github.control.createBranch({ owner: OWNER, repo: repo.repo, branch: 'main', from: 'master' });
      const stale = await repo.push({ 'README.md': 'old docs\n' }, 'docs (stale branch)', { branch: 'main' });
      await repo.createApplication('web', {
        source: { repoURL: repo.repoURL, targetRevision: 'HEAD', path: 'apps/web' }, destination: destination(`${repo.target}-web`), syncPolicy: automated,
      }, { 'ai-operator.enabled': 'true', environment: 'staging' });
      await repo.createPolicy('staging', { environment: 'staging', ...detection, ...candidate });
      await untilHealthyAt(repo, 'web', repo.firstCommit);
      await untilUptime(repo, 'web', 0.8);
      await repo.startOperator();

      const bad = await repo.push({ 'apps/web/deployment.yaml': deploymentYaml('web', undefined, 'v2', { label: BROKEN_RELEASE }) }, 'web: v2');
      await repo.refresh('web');
      await untilDegradedAt(repo, 'web', bad);

      const pr = await prOrRefusal(repo, 'web', 'staging');
      expect(pr.base).toBe('master');
      expect.soft(await changedFiles(repo, 'HEAD on master', pr.number)).toEqual(['apps/web/deployment.yaml']);
      const { record } = await mergedAndRecovered(repo, 'web');
      expect(record).toMatchObject({ branch: 'master', candidate: { revision: repo.firstCommit } });
      expect.soft((await attemptStatus(repo, record)).rolledBackFrom).toBe(bad);
      expect(await repo.fileAt('master', 'apps/web/deployment.yaml')).toBe(deploymentYaml('web', undefined, 'v1'));
      // main is left as it was
      expect((await repo.github.control.resolve({ owner: OWNER, repo: repo.repo, rev: 'main' })).sha).toBe(stale);
    }, { defaultBranch: 'master' });
  }, SCENARIO_TIMEOUT);
});

import { describe, expect, it } from 'vitest';
import { loadConfig, policyDefaults } from '../config.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import { matchesSelector, monitoringFor, selects, settingsFrom, type RollbackPolicy } from './settings.ts';

const defaults = policyDefaults(loadConfig({ GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token', MONITORED_APPS: 'listed-app' }));
const app = (name: string, labels: Record<string, string>, namespace = 'argocd'): ApplicationView => ({ ref: { namespace, name }, labels, history: [], resources: [] });

describe('monitoring and settings', () => {
  it('takes the environment defaults when no policy applies', () => {
    expect(monitoringFor(app('a', { 'ai-operator.enabled': 'true', environment: 'staging' }), [], defaults)).toMatchObject({ environment: 'staging', settings: { intervalSeconds: 10, minUptime: 0.99, approvers: { users: [], groups: [] } } });
    expect(monitoringFor(app('listed-app', {}), [], defaults)?.environment).toBe('production');
    expect(monitoringFor(app('other', { environment: 'staging' }), [], defaults)).toBeUndefined();
  });

  it('reads spec.detection.podSignals over its defaults, field by field (issue 21)', () => {
    expect(settingsFrom(defaults).podSignals).toEqual({ enabled: true, minRestarts: 3, waitingSeconds: 60 });
    expect(settingsFrom(defaults, { detection: { podSignals: { minRestarts: 5 } } }).podSignals).toEqual({ enabled: true, minRestarts: 5, waitingSeconds: 60 });
    expect(settingsFrom(defaults, { detection: { podSignals: { enabled: false } } }).podSignals).toEqual({ enabled: false, minRestarts: 3, waitingSeconds: 60 });
    // A field left empty in YAML (null) keeps its default, as the API server's schema default would.
    expect(settingsFrom(defaults, { detection: { podSignals: { waitingSeconds: null as never } } }).podSignals?.waitingSeconds).toBe(60);
  });

  it('treats an unknown environment label as production', () => {
    expect(monitoringFor(app('a', { 'ai-operator.enabled': 'true', environment: 'qa' }), [], defaults)?.environment).toBe('production');
  });

  it('lets the one policy of the app namespace that names or selects it override the defaults', () => {
    const policies: RollbackPolicy[] = [
      { name: 'z-other-namespace', namespace: 'elsewhere', spec: { applications: ['a'], environment: 'staging' } },
      { name: 'b-by-label', namespace: 'argocd', spec: { selector: { matchLabels: { team: 'pay' } }, detection: { intervalSeconds: 5 }, merge: { approvers: { users: ['alice'] } } } },
      { name: 'a-by-name', namespace: 'argocd', spec: { applications: ['a'], environment: 'production', suspend: true } },
    ];
    expect(monitoringFor(app('a', {}), policies, defaults)).toMatchObject({ policyRef: { name: 'a-by-name', namespace: 'argocd' }, environment: 'production', suspended: true });
    expect(monitoringFor(app('b', { team: 'pay', environment: 'staging' }), policies, defaults)).toMatchObject({ policyRef: { name: 'b-by-label' }, environment: 'staging', settings: { intervalSeconds: 5, approvers: { users: ['alice'], groups: [] } } });
    expect(monitoringFor(app('a', {}, 'elsewhere'), policies, defaults)?.policyRef?.name).toBe('z-other-namespace');
  });

  it('governs only the named apps when a policy names applications and no selector (SPEC §3)', () => {
    const staging: RollbackPolicy = { name: 'staging-q', namespace: 'argocd', spec: { applications: ['q-x'], environment: 'staging' } };
    expect(monitoringFor(app('q-x', {}), [staging], defaults)).toMatchObject({ policyRef: { name: 'staging-q' }, environment: 'staging' });
    // An opted-in production app is not the staging policy's: the environment defaults govern it
    const qy = monitoringFor(app('q-y', { 'ai-operator.enabled': 'true', environment: 'production' }), [staging], defaults);
    expect(qy).toMatchObject({ environment: 'production', suspended: false });
    expect(qy?.policyRef).toBeUndefined();
    // The default selector applies when neither is set (an empty list counts as unset), and an explicit selector as written
    const bare: RollbackPolicy = { name: 'bare', namespace: 'argocd', spec: { applications: [] } };
    expect(selects(bare, app('on', { 'ai-operator.enabled': 'true' }))).toBe(true);
    expect(selects(bare, app('off', {}))).toBe(false);
    const both: RollbackPolicy = { name: 'both', namespace: 'argocd', spec: { applications: ['named'], selector: { matchLabels: { team: 'pay' } } } };
    expect(['named', 'payer', 'opted'].map((n) => selects(both, app(n, n === 'payer' ? { team: 'pay' } : { 'ai-operator.enabled': 'true' })))).toEqual([true, true, false]);
  });

  it('refuses to choose between two policies that select one app: a conflict naming both, no policy, production if either says so', () => {
    const production: RollbackPolicy = { name: 'prod', namespace: 'argocd', spec: { selector: { matchLabels: { environment: 'production' } }, environment: 'production', merge: { approvers: { users: ['alice'] } } } };
    const canary: RollbackPolicy = { name: 'canary', namespace: 'argocd', spec: { environment: 'staging' } };
    const both = monitoringFor(app('cart', { 'ai-operator.enabled': 'true', environment: 'production' }), [production, canary], defaults);
    expect(both).toMatchObject({ environment: 'production', suspended: false, conflict: { policies: ['canary', 'prod'] } });
    expect(both?.policyRef).toBeUndefined();
    expect(both?.conflict?.message).toBe('Application cart is selected by 2 RollbackPolicies in argocd (canary, prod): no rollback is attempted until only one selects it');
    // Two staging policies: still a conflict (whose settings apply is ambiguous), staging
    const other: RollbackPolicy = { ...canary, name: 'canary-2' };
    expect(monitoringFor(app('cart', { 'ai-operator.enabled': 'true' }), [canary, other], defaults)).toMatchObject({ environment: 'staging', conflict: { policies: ['canary', 'canary-2'] } });
    // A policy of another namespace never conflicts
    expect(monitoringFor(app('cart', { 'ai-operator.enabled': 'true' }), [canary, { ...other, namespace: 'elsewhere' }], defaults)?.conflict).toBeUndefined();
  });

  it('matches label selectors as Kubernetes does', () => {
    const labels = { team: 'pay', tier: 'web' };
    expect(matchesSelector(labels, { matchLabels: { team: 'pay' } })).toBe(true);
    expect(matchesSelector(labels, { matchExpressions: [{ key: 'tier', operator: 'In', values: ['web', 'api'] }] })).toBe(true);
    expect(matchesSelector(labels, { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['web'] }] })).toBe(false);
    expect(matchesSelector(labels, { matchExpressions: [{ key: 'canary', operator: 'DoesNotExist' }] })).toBe(true);
    expect(matchesSelector(labels, { matchExpressions: [{ key: 'canary', operator: 'Exists' }] })).toBe(false);
  });

  it('keeps DRY_RUN on even when a policy says otherwise', () => {
    expect(settingsFrom({ ...defaults, dryRun: true }, { dryRun: false }).dryRun).toBe(true);
  });
});

import { describe, expect, it } from 'vitest';
import { loadConfig, policyDefaults } from '../config.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import { matchesSelector, monitoringFor, settingsFrom, type RollbackPolicy } from './settings.ts';

const defaults = policyDefaults(loadConfig({ GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token', MONITORED_APPS: 'listed-app' }));
const app = (name: string, labels: Record<string, string>, namespace = 'argocd'): ApplicationView => ({ ref: { namespace, name }, labels, history: [], resources: [] });

describe('monitoring and settings', () => {
  it('takes the environment defaults when no policy applies', () => {
    expect(monitoringFor(app('a', { 'ai-operator.enabled': 'true', environment: 'staging' }), [], defaults)).toMatchObject({ environment: 'staging', settings: { intervalSeconds: 10, minUptime: 0.99, approvers: { users: [], groups: [] } } });
    expect(monitoringFor(app('listed-app', {}), [], defaults)?.environment).toBe('production');
    expect(monitoringFor(app('other', { environment: 'staging' }), [], defaults)).toBeUndefined();
  });

  it('treats an unknown environment label as production', () => {
    expect(monitoringFor(app('a', { 'ai-operator.enabled': 'true', environment: 'qa' }), [], defaults)?.environment).toBe('production');
  });

  it('lets the first policy of the app namespace that names or selects it override the defaults', () => {
    const policies: RollbackPolicy[] = [
      { name: 'z-other-namespace', namespace: 'elsewhere', spec: { applications: ['a'], environment: 'staging' } },
      { name: 'b-by-label', namespace: 'argocd', spec: { selector: { matchLabels: { team: 'pay' } }, detection: { intervalSeconds: 5 }, merge: { approvers: { users: ['alice'] } } } },
      { name: 'a-by-name', namespace: 'argocd', spec: { applications: ['a'], environment: 'production', suspend: true } },
    ];
    expect(monitoringFor(app('a', { team: 'pay' }), policies, defaults)).toMatchObject({ policyRef: { name: 'a-by-name', namespace: 'argocd' }, environment: 'production', suspended: true });
    expect(monitoringFor(app('b', { team: 'pay', environment: 'staging' }), policies, defaults)).toMatchObject({ policyRef: { name: 'b-by-label' }, environment: 'staging', settings: { intervalSeconds: 5, approvers: { users: ['alice'], groups: [] } } });
    expect(monitoringFor(app('a', {}, 'elsewhere'), policies, defaults)?.policyRef?.name).toBe('z-other-namespace');
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

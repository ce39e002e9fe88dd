// Fixtures shared by the state machine's tests.
import type { Settings } from './record.ts';

export const SETTINGS: Settings = {
  intervalSeconds: 10, persistenceChecks: 3, uptimeQuery: 'q{name="$app"}', minUptime: 0.99, window: '24h', maxCommits: 50,
  searchTimeoutSeconds: 120, ciTimeoutSeconds: 300, approvalTimeoutSeconds: 3600, mergeMethod: 'squash',
  approvers: { users: ['alice'], groups: [] }, healthRestorationSeconds: 60, recoveryTimeoutSeconds: 600, cooldownSeconds: 0, dryRun: false,
};

import { describe, expect, it } from 'vitest';
import { claimOwnership, ignoredMessage, policyOwner, policyOwnership } from './installation.ts';

const policy = (installation?: string, claimedBy?: string) => ({ spec: { applications: ['cart'], ...(installation ? { installation } : {}) }, ...(claimedBy ? { claimedBy } : {}) });

describe('which installation acts on a policy\'s apps', () => {
  const cases: Array<[string, ReturnType<typeof policy>, ReturnType<typeof policyOwnership>]> = [
    ['named in spec.installation: that one', policy('team-a'), { kind: 'ours' }],
    ['named for another: theirs, by spec', policy('team-b'), { kind: 'theirs', installation: 'team-b', via: 'spec.installation' }],
    ['claimed by us', policy(undefined, 'team-a'), { kind: 'ours' }],
    ['claimed by another: theirs, by status', policy(undefined, 'team-b'), { kind: 'theirs', installation: 'team-b', via: 'status.installation' }],
    ['named for us though another claimed it: spec wins', policy('team-a', 'team-b'), { kind: 'ours' }],
    ['named for another though we claimed it: spec wins', policy('team-b', 'team-a'), { kind: 'theirs', installation: 'team-b', via: 'spec.installation' }],
    ['neither named nor claimed: nobody acts yet', policy(), { kind: 'unclaimed' }],
  ];
  it.each(cases)('%s', (_name, p, expected) => {
    expect(policyOwnership(p, 'team-a')).toEqual(expected);
  });

  it('has no owner while neither named nor claimed', () => {
    expect(policyOwner(policy())).toBeUndefined();
    expect(policyOwner(policy(undefined, 'team-b'))).toEqual({ installation: 'team-b', via: 'status.installation' });
  });
});

describe('which installation acts on an app no policy governs', () => {
  it('the holder of its claim Lease; nobody while there is none', () => {
    expect(claimOwnership('team-a', 'team-a')).toEqual({ kind: 'ours' });
    expect(claimOwnership('team-b', 'team-a')).toEqual({ kind: 'theirs', installation: 'team-b', via: 'Lease' });
    expect(claimOwnership(undefined, 'team-a')).toEqual({ kind: 'unclaimed' });
  });
});

describe('what the installation that does not act says', () => {
  it('names the object, who acts, where that is written, and what it does not do', () => {
    expect(ignoredMessage({ kind: 'RollbackPolicy', namespace: 'shop', name: 'apps' }, { kind: 'theirs', installation: 'team-a', via: 'status.installation' }, 'team-b'))
      .toBe('Ignored RollbackPolicy shop/apps: installation team-a acts on it (status.installation); installation team-b neither acts on its Applications nor writes its status');
    expect(ignoredMessage({ kind: 'Application', namespace: 'shop', name: 'cart' }, { kind: 'theirs', installation: 'team-a', via: 'Lease' }, 'team-b'))
      .toBe('Ignored Application shop/cart: installation team-a acts on it (Lease); installation team-b does not act on it');
  });
});

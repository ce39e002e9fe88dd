import { describe, expect, it } from 'vitest';
import { applicationRefusal, repositoryRefusal } from './repository.ts';

describe('repositoryRefusal (GITHUB_ORG)', () => {
  it('allows the organisation\'s repositories, in any URL form and case', () => {
    for (const repoURL of ['https://github.com/acme/gitops.git', 'git@github.com:acme/gitops.git', 'https://github.com/ACME/gitops']) {
      expect(repositoryRefusal({ repoURL }, 'acme')).toBeUndefined();
    }
  });

  it('refuses another owner, naming the URL and the organisation', () => {
    expect(repositoryRefusal({ repoURL: 'https://github.com/elsewhere/gitops.git' }, 'acme'))
      .toBe('spec.source.repoURL https://github.com/elsewhere/gitops.git is outside GITHUB_ORG acme: the operator opens pull requests only on acme\'s repositories');
  });

  it('refuses a URL that names no GitHub repository', () => {
    expect(repositoryRefusal({ repoURL: 'charts' }, 'acme')).toMatch(/is not a GitHub repository URL/);
  });
});

describe('applicationRefusal', () => {
  const source = { repoURL: 'https://github.com/acme/gitops.git' };
  it('refuses a shape it does not handle, with or without GITHUB_ORG, before looking at the repository', () => {
    const unsupported = 'spec.sources lists 2 source(s): multi-source Applications are not handled yet';
    expect(applicationRefusal({ source, unsupported }, undefined)).toEqual({ reason: 'UnsupportedShape', message: unsupported });
    expect(applicationRefusal({ source: { repoURL: 'https://github.com/other/x' }, unsupported }, 'acme')).toMatchObject({ reason: 'UnsupportedShape' });
  });
  it('otherwise refuses a repository outside GITHUB_ORG, and allows the rest', () => {
    expect(applicationRefusal({ source: { repoURL: 'https://github.com/other/x' } }, 'acme')).toMatchObject({ reason: 'RepositoryOutsideOrg', message: expect.stringContaining('outside GITHUB_ORG acme') });
    expect(applicationRefusal({ source }, 'acme')).toBeUndefined();
    expect(applicationRefusal({ source }, undefined)).toBeUndefined();
  });
});

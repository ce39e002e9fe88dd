import { describe, expect, it } from 'vitest';
import { applicationRefusal, gitHost, githubHosts, repositoryRefusal } from './repository.ts';

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

describe('the GitHub the operator talks to', () => {
  it('reads the host of every Git URL form', () => {
    expect(['https://github.com/acme/x.git', 'git@github.com:acme/x.git', 'ssh://git@GitHub.com:22/acme/x.git', 'git://127.0.0.1:9418/u/acme/x.git'].map(gitHost))
      .toEqual(['github.com', 'github.com', 'github.com', '127.0.0.1']);
    expect(gitHost('charts')).toBeUndefined();
  });
  it('is github.com, and GITHUB_API_URL\'s own host for GitHub Enterprise Server or a simulator', () => {
    expect(githubHosts('https://api.github.com')).toEqual(['github.com']);
    expect(githubHosts('https://ghe.example.com/api/v3')).toEqual(['github.com', 'ghe.example.com']);
    expect(repositoryRefusal({ repoURL: 'https://ghe.example.com/acme/gitops.git' }, 'acme', githubHosts('https://ghe.example.com/api/v3'))).toBeUndefined();
    expect(repositoryRefusal({ repoURL: 'https://gitlab.com/acme/gitops.git' }, 'acme', githubHosts('https://ghe.example.com/api/v3')))
      .toBe('spec.source.repoURL https://gitlab.com/acme/gitops.git is not a GitHub repository URL (host gitlab.com; the operator\'s GitHub is github.com or ghe.example.com): no rollback pull request can be opened');
  });
});

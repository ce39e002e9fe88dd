import { describe, expect, it } from 'vitest';
import { repositoryRefusal } from './repository.ts';

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

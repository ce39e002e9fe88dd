// GitHub's JSON objects, built from the simulator's state. Each factory carries
// every field GitHub's OpenAPI schema requires (the validator checks), with the
// URLs GitHub would put there, rooted at the simulator's own address.
import type { CommitObject, ChangedFile, TreeEntry } from './git.ts';
import type { Mergeability, SimAccount, SimApp, SimCheckRun, SimComment, SimInstallation, SimLabel, SimPull, SimRepo, SimStatus, World } from './world.ts';

type Json = Record<string, unknown>;

const nodeId = (kind: string, id: number | string): string => Buffer.from(`${kind}:${id}`).toString('base64url');

export class Views {
  readonly world: World;
  /** API root, e.g. http://127.0.0.1:4000 (no trailing slash). */
  readonly api: string;

  constructor(world: World, api: string) {
    this.world = world;
    this.api = api;
  }

  /** Where a person would look (GitHub Enterprise style: same host, no /repos prefix). */
  html(path: string): string {
    return `${this.api}/${path}`;
  }

  user(account: SimAccount): Json {
    const u = `${this.api}/users/${encodeURIComponent(account.login)}`;
    return {
      login: account.login, id: account.id, node_id: nodeId('User', account.id),
      avatar_url: `${this.api}/avatars/u/${account.id}`, gravatar_id: '',
      url: u, html_url: this.html(encodeURIComponent(account.login)),
      followers_url: `${u}/followers`, following_url: `${u}/following{/other_user}`, gists_url: `${u}/gists{/gist_id}`,
      starred_url: `${u}/starred{/owner}{/repo}`, subscriptions_url: `${u}/subscriptions`, organizations_url: `${u}/orgs`,
      repos_url: `${u}/repos`, events_url: `${u}/events{/privacy}`, received_events_url: `${u}/received_events`,
      type: account.type, site_admin: false, user_view_type: 'public',
    };
  }

  userByLogin(login: string): Json {
    return this.user(this.world.account(login));
  }

  /** GET /user: the authenticated user sees the private view of themselves. */
  privateUser(account: SimAccount): Json {
    return {
      ...this.user(account), user_view_type: 'private',
      name: account.name, company: null, blog: '', location: null, email: account.email, hireable: null, bio: null,
      public_repos: 0, public_gists: 0, followers: 0, following: 0, created_at: account.createdAt, updated_at: account.createdAt,
      private_gists: 0, total_private_repos: 0, owned_private_repos: 0, disk_usage: 0, collaborators: 0, two_factor_authentication: true,
    };
  }

  repository(repo: SimRepo): Json {
    const full = `${repo.owner}/${repo.name}`;
    const r = `${this.api}/repos/${full}`;
    const openIssues = this.world.pullsOf(repo).filter((p) => p.state === 'open').length;
    return {
      id: repo.id, node_id: nodeId('Repository', repo.id), name: repo.name, full_name: full,
      owner: this.userByLogin(repo.owner), private: true, html_url: this.html(full), description: null, fork: false, url: r,
      archive_url: `${r}/{archive_format}{/ref}`, assignees_url: `${r}/assignees{/user}`, blobs_url: `${r}/git/blobs{/sha}`,
      branches_url: `${r}/branches{/branch}`, collaborators_url: `${r}/collaborators{/collaborator}`, comments_url: `${r}/comments{/number}`,
      commits_url: `${r}/commits{/sha}`, compare_url: `${r}/compare/{base}...{head}`, contents_url: `${r}/contents/{+path}`,
      contributors_url: `${r}/contributors`, deployments_url: `${r}/deployments`, downloads_url: `${r}/downloads`, events_url: `${r}/events`,
      forks_url: `${r}/forks`, git_commits_url: `${r}/git/commits{/sha}`, git_refs_url: `${r}/git/refs{/sha}`, git_tags_url: `${r}/git/tags{/sha}`,
      git_url: `${this.api.replace(/^https?/, 'git')}/${full}.git`, issue_comment_url: `${r}/issues/comments{/number}`,
      issue_events_url: `${r}/issues/events{/number}`, issues_url: `${r}/issues{/number}`, keys_url: `${r}/keys{/key_id}`,
      labels_url: `${r}/labels{/name}`, languages_url: `${r}/languages`, merges_url: `${r}/merges`, milestones_url: `${r}/milestones{/number}`,
      notifications_url: `${r}/notifications{?since,all,participating}`, pulls_url: `${r}/pulls{/number}`, releases_url: `${r}/releases{/id}`,
      ssh_url: `git@127.0.0.1:${full}.git`, stargazers_url: `${r}/stargazers`, statuses_url: `${r}/statuses/{sha}`,
      subscribers_url: `${r}/subscribers`, subscription_url: `${r}/subscription`, tags_url: `${r}/tags`, teams_url: `${r}/teams`,
      trees_url: `${r}/git/trees{/sha}`, clone_url: `${this.html(full)}.git`, mirror_url: null, hooks_url: `${r}/hooks`,
      svn_url: this.html(full), homepage: null, language: null, forks_count: 0, forks: 0, stargazers_count: 0, watchers_count: 0, watchers: 0,
      size: 0, default_branch: repo.defaultBranch, open_issues_count: openIssues, open_issues: openIssues,
      is_template: false, topics: [], has_issues: true, has_projects: false, has_wiki: false, has_pages: false, has_downloads: true,
      has_discussions: false, archived: repo.archived === true, disabled: false, visibility: 'private', license: null,
      pushed_at: repo.createdAt, created_at: repo.createdAt, updated_at: repo.createdAt,
      allow_forking: false, web_commit_signoff_required: false, delete_branch_on_merge: repo.deleteBranchOnMerge === true,
    };
  }

  /** GET /repos/{owner}/{repo}: the full repository, which adds the counts to the summary (no parent: never a fork). */
  fullRepository(repo: SimRepo): Json {
    return { ...this.repository(repo), network_count: 0, subscribers_count: 0 };
  }

  private commitUser(email: string): Json | null {
    const account = this.world.accountByEmail(email);
    return account ? this.user(account) : null;
  }

  /** A commit as the commits API lists it. */
  commit(repo: SimRepo, c: CommitObject): Json {
    const r = `${this.api}/repos/${repo.owner}/${repo.name}`;
    return {
      url: `${r}/commits/${c.sha}`, sha: c.sha, node_id: nodeId('Commit', c.sha),
      html_url: this.html(`${repo.owner}/${repo.name}/commit/${c.sha}`), comments_url: `${r}/commits/${c.sha}/comments`,
      commit: {
        url: `${r}/git/commits/${c.sha}`, author: c.author, committer: c.committer, message: c.message, comment_count: 0,
        tree: { sha: c.tree, url: `${r}/git/trees/${c.tree}` }, verification: this.unsigned(),
      },
      author: this.commitUser(c.author.email), committer: this.commitUser(c.committer.email),
      parents: c.parents.map((p) => ({ sha: p, url: `${r}/commits/${p}`, html_url: this.html(`${repo.owner}/${repo.name}/commit/${p}`) })),
    };
  }

  private unsigned(): Json {
    return { verified: false, reason: 'unsigned', signature: null, payload: null, verified_at: null };
  }

  /** A commit as the Git Data API shows it. */
  gitCommit(repo: SimRepo, c: CommitObject): Json {
    const r = `${this.api}/repos/${repo.owner}/${repo.name}`;
    return {
      sha: c.sha, node_id: nodeId('Commit', c.sha), url: `${r}/git/commits/${c.sha}`, html_url: this.html(`${repo.owner}/${repo.name}/commit/${c.sha}`),
      author: c.author, committer: c.committer, message: c.message, tree: { sha: c.tree, url: `${r}/git/trees/${c.tree}` },
      parents: c.parents.map((p) => ({ sha: p, url: `${r}/git/commits/${p}`, html_url: this.html(`${repo.owner}/${repo.name}/commit/${p}`) })),
      verification: this.unsigned(),
    };
  }

  gitRef(repo: SimRepo, ref: string, sha: string): Json {
    const r = `${this.api}/repos/${repo.owner}/${repo.name}`;
    return { ref, node_id: nodeId('Ref', `${repo.id}:${ref}`), url: `${r}/git/${ref}`, object: { type: 'commit', sha, url: `${r}/git/commits/${sha}` } };
  }

  tree(repo: SimRepo, sha: string, entries: TreeEntry[], truncated: boolean): Json {
    const r = `${this.api}/repos/${repo.owner}/${repo.name}`;
    return {
      sha, url: `${r}/git/trees/${sha}`, truncated,
      tree: entries.map((e) => ({
        path: e.path, mode: e.mode, type: e.type, sha: e.sha,
        ...(e.size !== undefined ? { size: e.size } : {}),
        ...(e.type === 'blob' ? { url: `${r}/git/blobs/${e.sha}` } : e.type === 'tree' ? { url: `${r}/git/trees/${e.sha}` } : {}),
      })),
    };
  }

  /** GitHub sends every blob base64-encoded, wrapped at 60 characters, each line ending in a newline. */
  blob(repo: SimRepo, sha: string, content: Buffer): Json {
    const encoded = content.toString('base64');
    const lines = encoded.match(/.{1,60}/g) ?? [];
    return {
      sha, node_id: nodeId('Blob', sha), size: content.length, url: `${this.api}/repos/${repo.owner}/${repo.name}/git/blobs/${sha}`,
      content: lines.map((l) => `${l}\n`).join(''), encoding: 'base64',
    };
  }

  label(repo: SimRepo, label: SimLabel): Json {
    return {
      id: label.id, node_id: nodeId('Label', label.id), url: `${this.api}/repos/${repo.owner}/${repo.name}/labels/${encodeURIComponent(label.name)}`,
      name: label.name, description: label.description, color: label.color, default: false,
    };
  }

  private branch(repo: SimRepo, ref: string, sha: string): Json {
    return { label: `${repo.owner}:${ref}`, ref, sha, user: this.userByLogin(repo.owner), repo: this.repository(repo) };
  }

  /** pull-request-simple (lists); `detail` adds what GET /pulls/{n} carries (pull-request). */
  pull(repo: SimRepo, pull: SimPull, detail?: { mergeability: Mergeability; commits: number; files: ChangedFile[] }): Json {
    const r = `${this.api}/repos/${repo.owner}/${repo.name}`;
    const self = `${r}/pulls/${pull.number}`;
    const html = this.html(`${repo.owner}/${repo.name}/pull/${pull.number}`);
    const simple: Json = {
      url: self, id: pull.id, node_id: nodeId('PullRequest', pull.id), html_url: html,
      diff_url: `${html}.diff`, patch_url: `${html}.patch`, issue_url: `${r}/issues/${pull.number}`,
      commits_url: `${self}/commits`, review_comments_url: `${self}/comments`, review_comment_url: `${r}/pulls/comments{/number}`,
      comments_url: `${r}/issues/${pull.number}/comments`, statuses_url: `${r}/statuses/${pull.headSha}`,
      number: pull.number, state: pull.state, locked: false, title: pull.title, user: this.userByLogin(pull.user), body: pull.body,
      labels: pull.labels.map((name) => this.label(repo, this.world.label(repo, name))),
      milestone: null, active_lock_reason: null,
      created_at: pull.createdAt, updated_at: pull.updatedAt, closed_at: pull.closedAt, merged_at: pull.mergedAt,
      merge_commit_sha: pull.mergeCommitSha, assignee: null, assignees: [], requested_reviewers: [], requested_teams: [],
      head: this.branch(repo, pull.head, pull.headSha), base: this.branch(repo, pull.base, pull.baseSha),
      _links: {
        self: { href: self }, html: { href: html }, issue: { href: `${r}/issues/${pull.number}` },
        comments: { href: `${r}/issues/${pull.number}/comments` }, review_comments: { href: `${self}/comments` },
        review_comment: { href: `${r}/pulls/comments{/number}` }, commits: { href: `${self}/commits` }, statuses: { href: `${r}/statuses/${pull.headSha}` },
      },
      author_association: pull.user.toLowerCase() === repo.owner.toLowerCase() ? 'OWNER' : 'MEMBER', auto_merge: null, draft: false,
    };
    if (!detail) return simple;
    return {
      ...simple,
      merged: pull.merged, mergeable: detail.mergeability.mergeable, rebaseable: detail.mergeability.mergeable,
      mergeable_state: detail.mergeability.state, merged_by: pull.mergedBy ? this.userByLogin(pull.mergedBy) : null,
      comments: this.world.commentsOf(repo, pull.number).length, review_comments: 0, maintainer_can_modify: false,
      commits: detail.commits, additions: detail.files.reduce((n, f) => n + f.additions, 0),
      deletions: detail.files.reduce((n, f) => n + f.deletions, 0), changed_files: detail.files.length,
    };
  }

  diffEntry(repo: SimRepo, pull: SimPull, file: ChangedFile): Json {
    const at = file.status === 'removed' ? pull.baseSha : pull.headSha;
    const path = file.path.split('/').map(encodeURIComponent).join('/');
    return {
      sha: file.sha, filename: file.path, status: file.status, additions: file.additions, deletions: file.deletions,
      changes: file.additions + file.deletions,
      blob_url: this.html(`${repo.owner}/${repo.name}/blob/${at}/${path}`), raw_url: this.html(`${repo.owner}/${repo.name}/raw/${at}/${path}`),
      contents_url: `${this.api}/repos/${repo.owner}/${repo.name}/contents/${path}?ref=${at}`,
    };
  }

  comment(repo: SimRepo, number: number, comment: SimComment): Json {
    const r = `${this.api}/repos/${repo.owner}/${repo.name}`;
    return {
      id: comment.id, node_id: nodeId('IssueComment', comment.id), url: `${r}/issues/comments/${comment.id}`,
      html_url: this.html(`${repo.owner}/${repo.name}/pull/${number}#issuecomment-${comment.id}`), body: comment.body,
      user: this.userByLogin(comment.user), created_at: comment.createdAt, updated_at: comment.updatedAt,
      issue_url: `${r}/issues/${number}`, author_association: 'MEMBER',
    };
  }

  status(repo: SimRepo, status: SimStatus): Json {
    return {
      url: `${this.api}/repos/${repo.owner}/${repo.name}/statuses/${status.sha}`, avatar_url: null, id: status.id,
      node_id: nodeId('StatusContext', status.id), state: status.state, description: status.description, target_url: status.targetUrl,
      context: status.context, created_at: status.createdAt, updated_at: status.updatedAt, creator: this.userByLogin(status.creator),
    };
  }

  combinedStatus(repo: SimRepo, sha: string, statuses: SimStatus[]): Json {
    // GitHub: failure if any context failed or errored; pending if none or any pending; else success.
    const state = statuses.some((s) => s.state === 'failure' || s.state === 'error') ? 'failure'
      : statuses.length === 0 || statuses.some((s) => s.state === 'pending') ? 'pending' : 'success';
    const r = `${this.api}/repos/${repo.owner}/${repo.name}`;
    return {
      state, sha, total_count: statuses.length,
      // The combined view lists simple statuses: the same, without the creator.
      statuses: statuses.map((s) => { const { creator: _creator, ...simple } = this.status(repo, s); return simple; }),
      repository: this.repository(repo), commit_url: `${r}/commits/${sha}`, url: `${r}/commits/${sha}/status`,
    };
  }

  integration(app: SimApp): Json {
    return {
      id: app.id, slug: app.slug, node_id: nodeId('Integration', app.id), client_id: `Iv1.${app.id}`, owner: this.userByLogin(app.owner),
      name: app.name, description: null, external_url: this.html(`apps/${app.slug}`), html_url: this.html(`apps/${app.slug}`),
      created_at: app.createdAt, updated_at: app.createdAt,
      permissions: { checks: 'write', contents: 'write', issues: 'write', metadata: 'read', pull_requests: 'write', statuses: 'read' },
      events: [],
    };
  }

  installation(installation: SimInstallation): Json {
    const app = this.world.apps.get(installation.appId)!;
    const account = this.world.account(installation.account);
    return {
      id: installation.id, account: this.user(account), repository_selection: 'all',
      access_tokens_url: `${this.api}/app/installations/${installation.id}/access_tokens`,
      repositories_url: `${this.api}/installation/repositories`, html_url: this.html(`organizations/${account.login}/settings/installations/${installation.id}`),
      app_id: app.id, app_slug: app.slug, target_id: account.id, target_type: account.type,
      permissions: { checks: 'write', contents: 'write', issues: 'write', metadata: 'read', pull_requests: 'write', statuses: 'read' },
      events: [], created_at: installation.createdAt, updated_at: installation.createdAt, single_file_name: null,
      suspended_by: null, suspended_at: null,
    };
  }

  checkRun(repo: SimRepo, run: SimCheckRun): Json {
    const r = `${this.api}/repos/${repo.owner}/${repo.name}`;
    const app = run.appId !== null ? this.world.apps.get(run.appId) : undefined;
    const pulls = this.world.pullsOf(repo).filter((p) => p.state === 'open' && p.headSha === run.sha);
    return {
      id: run.id, node_id: nodeId('CheckRun', run.id), head_sha: run.sha, external_id: run.externalId, name: run.name,
      url: `${r}/check-runs/${run.id}`, html_url: this.html(`${repo.owner}/${repo.name}/runs/${run.id}`), details_url: run.detailsUrl,
      status: run.status, conclusion: run.conclusion, started_at: run.startedAt, completed_at: run.completedAt,
      output: { ...run.output, annotations_count: 0, annotations_url: `${r}/check-runs/${run.id}/annotations` },
      check_suite: { id: run.id }, app: app ? this.integration(app) : null,
      pull_requests: pulls.map((p) => ({
        id: p.id, number: p.number, url: `${r}/pulls/${p.number}`,
        head: { ref: p.head, sha: p.headSha, repo: { id: repo.id, url: r, name: repo.name } },
        base: { ref: p.base, sha: p.baseSha, repo: { id: repo.id, url: r, name: repo.name } },
      })),
    };
  }
}

// The simulator's storage: real bare git repositories, driven with git plumbing
// only (no working tree), so commits, trees, refs, merges and conflicts are the
// ones git itself computes. The Argo CD simulator reads the same bare repos.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ZERO_SHA = '0000000000000000000000000000000000000000';

export class GitError extends Error {
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(args: readonly string[], exitCode: number | null, stderr: string) {
    super(`git ${args.join(' ')} exited ${exitCode}: ${stderr.trim()}`);
    this.name = 'GitError';
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

export interface Signature {
  name: string;
  email: string;
  /** ISO 8601. */
  date: string;
}

export interface CommitObject {
  sha: string;
  tree: string;
  parents: string[];
  author: Signature;
  committer: Signature;
  message: string;
}

export interface TreeEntry {
  mode: string;
  type: 'blob' | 'tree' | 'commit';
  sha: string;
  /** Blobs only. */
  size?: number;
  path: string;
}

/** One change to a tree: a blob or whole subtree at `path`, or `sha: null` to delete it. */
export interface TreeEdit {
  path: string;
  mode: string;
  type: 'blob' | 'tree' | 'commit';
  sha: string | null;
}

export interface ChangedFile {
  path: string;
  status: 'added' | 'removed' | 'modified';
  /** The blob after the change (null when removed). */
  sha: string | null;
  additions: number;
  deletions: number;
}

interface RunOptions {
  input?: string | Buffer;
  env?: Record<string, string>;
  /** Exit codes that are answers, not failures (merge-tree answers 1 on conflict). */
  okCodes?: number[];
}

const SEP_FIELD = '\x1f';
const SEP_RECORD = '\x1e';
const LOG_FORMAT = ['%H', '%T', '%P', '%an', '%ae', '%aI', '%cn', '%ce', '%cI', '%B'].join('%x1f') + '%x1e';

function isoFromGit(date: string): string {
  return new Date(date).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const FULL_SHA = /^[0-9a-f]{40}$/;

export class GitRepo {
  readonly dir: string;
  /** Answers about objects named by full SHAs never change (refs do, and are never cached). */
  private readonly memo = new Map<string, Promise<unknown>>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Each git command is a process (~5 ms); polling asks the same questions about
   * the same commits over and over, so immutable answers are kept. `keep` says
   * whether an answer may be kept: "no such object" may change once it is written.
   */
  private cached<T>(key: string, shas: string[], compute: () => Promise<T>, keep: (value: T) => boolean = () => true): Promise<T> {
    if (!shas.every((s) => FULL_SHA.test(s))) return compute();
    const hit = this.memo.get(key);
    if (hit) return hit as Promise<T>;
    const value = compute();
    this.memo.set(key, value);
    if (this.memo.size > 20_000) this.memo.delete(this.memo.keys().next().value!);
    value.then((v) => { if (!keep(v)) this.memo.delete(key); }, () => this.memo.delete(key));
    return value;
  }

  async run(args: string[], options: RunOptions = {}): Promise<{ stdout: string; code: number }> {
    const full = ['--git-dir', this.dir, ...args];
    return new Promise((resolve, reject) => {
      const child = execFile('git', full, {
        maxBuffer: 256 * 1024 * 1024,
        // A fixed identity and no user config: results never depend on the machine.
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: this.dir, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C', ...options.env },
      }, (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        if (code === 0 || (code !== null && options.okCodes?.includes(code))) resolve({ stdout, code });
        else reject(new GitError(args, code, stderr || (error?.message ?? '')));
      });
      if (options.input !== undefined) child.stdin?.end(options.input);
    });
  }

  private async out(args: string[], options?: RunOptions): Promise<string> {
    return (await this.run(args, options)).stdout;
  }

  async init(initialBranch: string): Promise<void> {
    await this.run(['init', '--quiet', '--bare', `--initial-branch=${initialBranch}`, this.dir]);
  }

  async hashObject(content: string | Buffer): Promise<string> {
    return (await this.out(['hash-object', '-w', '--stdin'], { input: content })).trim();
  }

  async commitTree(tree: string, parents: string[], message: string, author: Signature, committer: Signature = author): Promise<string> {
    const args = ['commit-tree', tree, ...parents.flatMap((p) => ['-p', p])];
    return (await this.out(args, {
      input: message,
      env: {
        GIT_AUTHOR_NAME: author.name, GIT_AUTHOR_EMAIL: author.email, GIT_AUTHOR_DATE: author.date,
        GIT_COMMITTER_NAME: committer.name, GIT_COMMITTER_EMAIL: committer.email, GIT_COMMITTER_DATE: committer.date,
      },
    })).trim();
  }

  /** Moves `ref` to `sha` only if it still points at `expected` (ZERO_SHA: must not exist). */
  async updateRef(ref: string, sha: string, expected?: string): Promise<void> {
    await this.run(['update-ref', ref, sha, ...(expected !== undefined ? [expected] : [])]);
  }

  async deleteRef(ref: string): Promise<void> {
    await this.run(['update-ref', '-d', ref]);
  }

  /** The commit a revision names, or undefined when there is none. */
  resolveCommit(rev: string): Promise<string | undefined> {
    return this.cached(`commit ${rev}`, [rev], async () => {
      const { stdout, code } = await this.run(['rev-parse', '--verify', '--quiet', '--end-of-options', `${rev}^{commit}`], { okCodes: [1, 128] });
      return code === 0 ? stdout.trim() : undefined;
    }, (v) => v !== undefined);
  }

  /** The tree a commit or tree names, or undefined. */
  resolveTree(rev: string): Promise<string | undefined> {
    return this.cached(`tree ${rev}`, [rev], async () => {
      const { stdout, code } = await this.run(['rev-parse', '--verify', '--quiet', '--end-of-options', `${rev}^{tree}`], { okCodes: [1, 128] });
      return code === 0 ? stdout.trim() : undefined;
    }, (v) => v !== undefined);
  }

  objectType(sha: string): Promise<string | undefined> {
    return this.cached(`type ${sha}`, [sha], async () => {
      const { stdout, code } = await this.run(['cat-file', '-t', sha], { okCodes: [1, 128] });
      return code === 0 ? stdout.trim() : undefined;
    }, (v) => v !== undefined);
  }

  async refExists(ref: string): Promise<boolean> {
    const { code } = await this.run(['show-ref', '--verify', '--quiet', ref], { okCodes: [1] });
    return code === 0;
  }

  isAncestor(ancestor: string, descendant: string): Promise<boolean> {
    return this.cached(`ancestor ${ancestor} ${descendant}`, [ancestor, descendant], async () => {
      const { code } = await this.run(['merge-base', '--is-ancestor', ancestor, descendant], { okCodes: [1] });
      return code === 0;
    });
  }

  mergeBase(a: string, b: string): Promise<string | undefined> {
    return this.cached(`merge-base ${a} ${b}`, [a, b], async () => {
      const { stdout, code } = await this.run(['merge-base', a, b], { okCodes: [1] });
      return code === 0 ? stdout.trim() : undefined;
    });
  }

  /** Commits reachable from `rev` (optionally touching `path`), newest first. */
  async log(rev: string, options: { path?: string; skip?: number; max?: number; exclude?: string } = {}): Promise<CommitObject[]> {
    const args = ['log', `--format=${LOG_FORMAT}`];
    if (options.skip) args.push(`--skip=${options.skip}`);
    if (options.max !== undefined) args.push(`--max-count=${options.max}`);
    args.push(rev);
    if (options.exclude) args.push(`^${options.exclude}`);
    args.push('--');
    if (options.path !== undefined && options.path !== '' && options.path !== '.') args.push(options.path);
    const out = await this.out(args);
    return out.split(SEP_RECORD).map((r) => r.replace(/^\n/, '')).filter((r) => r.length > 0).map((record) => {
      const [sha, tree, parents, an, ae, ad, cn, ce, cd, message] = record.split(SEP_FIELD);
      return {
        sha: sha!, tree: tree!, parents: parents ? parents.split(' ') : [],
        author: { name: an!, email: ae!, date: isoFromGit(ad!) },
        committer: { name: cn!, email: ce!, date: isoFromGit(cd!) },
        message: (message ?? '').replace(/\n$/, ''),
      };
    });
  }

  commit(sha: string): Promise<CommitObject | undefined> {
    return this.cached(`cat ${sha}`, [sha], async () => {
      if (await this.objectType(sha) !== 'commit') return undefined;
      return (await this.log(sha, { max: 1 }))[0];
    }, (v) => v !== undefined);
  }

  lsTree(treeish: string, recursive: boolean): Promise<TreeEntry[]> {
    return this.cached(`ls-tree ${recursive} ${treeish}`, [treeish], () => this.listTree(treeish, recursive));
  }

  private async listTree(treeish: string, recursive: boolean): Promise<TreeEntry[]> {
    const out = await this.out(['ls-tree', '-z', '-l', ...(recursive ? ['-r', '-t'] : []), treeish]);
    return out.split('\0').filter((line) => line.length > 0).map((line) => {
      const tab = line.indexOf('\t');
      const [mode, type, sha, size] = line.slice(0, tab).split(/\s+/);
      return { mode: mode!, type: type as TreeEntry['type'], sha: sha!, ...(type === 'blob' ? { size: Number(size) } : {}), path: line.slice(tab + 1) };
    });
  }

  /**
   * Writes the tree `base` (or an empty one) with `edits` applied, through a
   * throw-away index: git's own index handles nested paths and deletions.
   */
  async writeTree(base: string | undefined, edits: TreeEdit[]): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'github-sim-index-'));
    const env = { GIT_INDEX_FILE: join(dir, 'index') };
    try {
      await this.run(base ? ['read-tree', base] : ['read-tree', '--empty'], { env });
      const indexed = (await this.out(['ls-files', '-z', '--cached'], { env })).split('\0').filter((p) => p.length > 0);
      const lines: string[] = [];
      for (const edit of edits) {
        const path = edit.path.replace(/^\/+|\/+$/g, '');
        // Whatever is at the path now goes: a file, or everything under a directory.
        for (const p of indexed) if (p === path || p.startsWith(`${path}/`)) lines.push(`0 ${ZERO_SHA}\t${p}`);
        if (edit.sha === null) continue;
        if (edit.type === 'tree') {
          for (const entry of await this.lsTree(edit.sha, true)) {
            if (entry.type !== 'tree') lines.push(`${entry.mode} ${entry.sha}\t${path}/${entry.path}`);
          }
        } else {
          lines.push(`${edit.mode} ${edit.sha}\t${path}`);
        }
      }
      if (lines.length > 0) await this.run(['update-index', '--index-info'], { env, input: `${lines.join('\n')}\n` });
      return (await this.out(['write-tree'], { env })).trim();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** A real three-way merge of two commits (git merge-tree --write-tree). */
  mergeTree(ours: string, theirs: string): Promise<{ clean: boolean; tree: string; conflicts: string[] }> {
    return this.cached(`merge-tree ${ours} ${theirs}`, [ours, theirs], () => this.trialMerge(ours, theirs));
  }

  private async trialMerge(ours: string, theirs: string): Promise<{ clean: boolean; tree: string; conflicts: string[] }> {
    const { stdout, code } = await this.run(['merge-tree', '--write-tree', '--name-only', '--no-messages', ours, theirs], { okCodes: [1] });
    const [tree, ...conflicts] = stdout.split('\n').filter((l) => l.length > 0);
    return { clean: code === 0, tree: tree!, conflicts };
  }

  /**
   * Replays `commit` onto `onto` (a cherry-pick) with plumbing only: git 2.39's
   * merge-tree has no --merge-base, so a stand-in commit with onto's tree and
   * the picked commit's parent makes that parent the merge base.
   */
  async cherryPickTree(commit: CommitObject, onto: string): Promise<{ clean: boolean; tree: string }> {
    const ontoTree = (await this.resolveTree(onto))!;
    const standIn = await this.commitTree(ontoTree, commit.parents.slice(0, 1), 'stand-in', commit.committer);
    const { clean, tree } = await this.mergeTree(standIn, commit.sha);
    return { clean, tree };
  }

  /** Files that differ between two commits, with line counts. */
  diff(from: string, to: string): Promise<ChangedFile[]> {
    return this.cached(`diff ${from} ${to}`, [from, to], () => this.changes(from, to));
  }

  private async changes(from: string, to: string): Promise<ChangedFile[]> {
    const raw = (await this.out(['diff', '--raw', '-z', '--no-renames', '--no-abbrev', from, to])).split('\0');
    const numstat = (await this.out(['diff', '--numstat', '-z', '--no-renames', from, to])).split('\0');
    const counts = new Map<string, [number, number]>();
    for (const line of numstat) {
      const [add, del, path] = line.split('\t');
      if (path !== undefined) counts.set(path, [Number(add) || 0, Number(del) || 0]);
    }
    const files: ChangedFile[] = [];
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const meta = raw[i]!.split(' ');
      const path = raw[i + 1]!;
      const letter = meta[4] ?? 'M';
      const [additions, deletions] = counts.get(path) ?? [0, 0];
      files.push({
        path,
        status: letter === 'A' ? 'added' : letter === 'D' ? 'removed' : 'modified',
        sha: letter === 'D' ? null : meta[3]!,
        additions, deletions,
      });
    }
    return files;
  }
}

// The simulator's storage: real bare git repositories, driven with git plumbing
// only (no working tree), so commits, trees, refs, merges and conflicts are the
// ones git itself computes. The Argo CD simulator reads the same bare repos.
//
// Reads (refs, commits, trees, object types) go through one long-running
// `git cat-file --batch-command` (it sees new objects and moved refs at once);
// writes and computations (commit-tree, update-ref, merge-tree, diff, log) are
// one git process each. Answers about objects named by full SHAs never change
// and are kept, so polling costs no git work at all.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ObjectReader } from './object-reader.ts';

export const ZERO_SHA = '0000000000000000000000000000000000000000';
const FULL_SHA = /^[0-9a-f]{40}$/;

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

const LOG_FORMAT = ['%H', '%T', '%P', '%an', '%ae', '%aI', '%cn', '%ce', '%cI', '%B'].join('%x1f') + '%x1e';

function iso(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** "Name <email> 1700000000 +0000" (a commit header) as a signature. */
function signatureOf(line: string): Signature {
  const m = /^(.*) <(.*)> (\d+) [+-]\d{4}$/.exec(line);
  if (!m) throw new Error(`unreadable signature: ${line}`);
  return { name: m[1]!, email: m[2]!, date: iso(new Date(Number(m[3]) * 1000)) };
}

function parseCommit(sha: string, content: Buffer): CommitObject {
  const text = content.toString('utf8');
  const split = text.indexOf('\n\n');
  const headers = (split < 0 ? text : text.slice(0, split)).split('\n').filter((l) => !l.startsWith(' '));
  const value = (name: string) => headers.filter((h) => h.startsWith(`${name} `)).map((h) => h.slice(name.length + 1));
  return {
    sha, tree: value('tree')[0]!, parents: value('parent'),
    author: signatureOf(value('author')[0]!), committer: signatureOf(value('committer')[0]!),
    message: split < 0 ? '' : text.slice(split + 2).replace(/\n$/, ''),
  };
}

/** A tree object's entries: "<mode> <name>\0<20-byte id>" each. */
function parseTree(content: Buffer): Array<{ mode: string; name: string; sha: string }> {
  const entries: Array<{ mode: string; name: string; sha: string }> = [];
  let at = 0;
  while (at < content.length) {
    const space = content.indexOf(0x20, at);
    const nul = content.indexOf(0, space);
    entries.push({
      mode: content.subarray(at, space).toString('ascii').padStart(6, '0'),
      name: content.subarray(space + 1, nul).toString('utf8'),
      sha: content.subarray(nul + 1, nul + 21).toString('hex'),
    });
    at = nul + 21;
  }
  return entries;
}

const typeOfMode = (mode: string): TreeEntry['type'] => (mode === '040000' ? 'tree' : mode === '160000' ? 'commit' : 'blob');

export class GitRepo {
  readonly dir: string;
  private readonly reader: ObjectReader;
  private readonly memo = new Map<string, Promise<unknown>>();

  constructor(dir: string) {
    this.dir = dir;
    this.reader = new ObjectReader(dir);
  }

  close(): void {
    this.reader.close();
  }

  /**
   * Keeps answers about full SHAs (immutable objects). `keep` says whether an
   * answer may be kept: "no such object" may change once the object is written.
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

  async run(args: string[], options: RunOptions = {}, command = 'git'): Promise<{ stdout: string; code: number }> {
    const full = command === 'git' ? ['--git-dir', this.dir, ...args] : args;
    return new Promise((resolve, reject) => {
      const child = execFile(command, full, {
        maxBuffer: 256 * 1024 * 1024,
        // No user or system config: results never depend on the machine.
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

  /** The commit a revision names (a SHA, a full ref, a branch name), or undefined when there is none. */
  resolveCommit(rev: string): Promise<string | undefined> {
    return this.cached(`commit ${rev}`, [rev], async () => (await this.reader.info(`${rev}^{commit}`))?.sha, (v) => v !== undefined);
  }

  /** The tree a commit or tree names, or undefined. */
  resolveTree(rev: string): Promise<string | undefined> {
    return this.cached(`tree ${rev}`, [rev], async () => (await this.reader.info(`${rev}^{tree}`))?.sha, (v) => v !== undefined);
  }

  objectType(sha: string): Promise<string | undefined> {
    return this.cached(`type ${sha}`, [sha], async () => (await this.reader.info(sha))?.type, (v) => v !== undefined);
  }

  /** Deletes `ref` only if it still points at `expected` (git's own compare-and-swap). */
  async deleteRef(ref: string, expected: string): Promise<void> {
    await this.run(['update-ref', '-d', ref, expected]);
  }

  /** The branches (refs/heads/*), with the commit each points at. */
  async branches(): Promise<Array<{ name: string; sha: string }>> {
    const out = (await this.run(['for-each-ref', '--format=%(refname:lstrip=2) %(objectname)', 'refs/heads/'])).stdout;
    return out.split('\n').filter(Boolean).map((line) => {
      const at = line.lastIndexOf(' ');
      return { name: line.slice(0, at), sha: line.slice(at + 1) };
    });
  }

  async refExists(ref: string): Promise<boolean> {
    return (await this.reader.info(ref)) !== undefined;
  }

  isAncestor(ancestor: string, descendant: string): Promise<boolean> {
    return this.cached(`ancestor ${ancestor} ${descendant}`, [ancestor, descendant], async () => {
      const { code } = await this.run(['merge-base', '--is-ancestor', ancestor, descendant], { okCodes: [1] });
      return code === 0;
    });
  }

  /** How many commits `rev` has that `exclude` has not. */
  countCommits(rev: string, exclude: string): Promise<number> {
    return this.cached(`count ${rev} ${exclude}`, [rev, exclude], async () => Number((await this.out(['rev-list', '--count', rev, `^${exclude}`])).trim()));
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
    return out.split('\x1e').map((r) => r.replace(/^\n/, '')).filter((r) => r.length > 0).map((record) => {
      const [sha, tree, parents, an, ae, ad, cn, ce, cd, message] = record.split('\x1f');
      return {
        sha: sha!, tree: tree!, parents: parents ? parents.split(' ') : [],
        author: { name: an!, email: ae!, date: iso(new Date(ad!)) },
        committer: { name: cn!, email: ce!, date: iso(new Date(cd!)) },
        message: (message ?? '').replace(/\n$/, ''),
      };
    });
  }

  commit(sha: string): Promise<CommitObject | undefined> {
    return this.cached(`cat ${sha}`, [sha], async () => {
      const object = await this.reader.contents(sha);
      return object?.type === 'commit' ? parseCommit(object.sha, object.content!) : undefined;
    }, (v) => v !== undefined);
  }

  /** A blob's bytes, or undefined when `sha` names no blob (nothing, or a tree or commit). */
  blob(sha: string): Promise<Buffer | undefined> {
    return this.cached(`blob ${sha}`, [sha], async () => {
      const object = await this.reader.contents(sha);
      return object?.type === 'blob' ? object.content! : undefined;
    }, (v) => v !== undefined);
  }

  /** The entries of a tree (of a commit or tree), like `git ls-tree -l [-r -t]`. */
  lsTree(treeish: string, recursive: boolean): Promise<TreeEntry[]> {
    return this.cached(`ls-tree ${recursive} ${treeish}`, [treeish], async () => {
      const root = await this.reader.contents(`${treeish}^{tree}`);
      if (!root) throw new GitError(['ls-tree', treeish], 128, `not a tree: ${treeish}`);
      const entries: TreeEntry[] = [];
      const walk = async (content: Buffer, prefix: string): Promise<void> => {
        for (const e of parseTree(content)) {
          const type = typeOfMode(e.mode);
          entries.push({ mode: e.mode, type, sha: e.sha, path: `${prefix}${e.name}` });
          if (type === 'tree' && recursive) await walk((await this.reader.contents(e.sha))!.content!, `${prefix}${e.name}/`);
        }
      };
      await walk(root.content!, '');
      // Blob sizes, asked all at once (the reader answers in order, no process each).
      await Promise.all(entries.filter((e) => e.type === 'blob').map(async (e) => { e.size = (await this.reader.info(e.sha))!.size; }));
      return entries;
    });
  }

  /** Every file (blob or submodule) at or under `path` in `tree`, with full paths. */
  private async filesAt(tree: string, path: string): Promise<string[]> {
    const found = await this.reader.info(`${tree}:${path}`);
    if (!found) return [];
    if (found.type !== 'tree') return [path];
    return (await this.lsTree(found.sha, true)).filter((e) => e.type !== 'tree').map((e) => `${path}/${e.path}`);
  }

  /**
   * Writes the tree `base` (or an empty one) with `edits` applied, through a
   * throw-away index: git's own index handles nested paths and deletions. The
   * three index commands run as one shell pipeline — one process start, not three.
   */
  async writeTree(base: string | undefined, edits: TreeEdit[]): Promise<string> {
    const lines: string[] = [];
    for (const edit of edits) {
      const path = edit.path.replace(/^\/+|\/+$/g, '');
      // Whatever is at the path now goes: a file, or everything under a directory.
      if (base) for (const p of await this.filesAt(base, path)) lines.push(`0 ${ZERO_SHA}\t${p}`);
      if (edit.sha === null) continue;
      if (edit.type === 'tree') {
        for (const entry of await this.lsTree(edit.sha, true)) {
          if (entry.type !== 'tree') lines.push(`${entry.mode} ${entry.sha}\t${path}/${entry.path}`);
        }
      } else {
        lines.push(`${edit.mode} ${edit.sha}\t${path}`);
      }
    }
    const dir = await mkdtemp(join(tmpdir(), 'github-sim-index-'));
    try {
      const script = `set -e; git --git-dir "$0" read-tree ${base ? '"$1"' : '--empty'}; git --git-dir "$0" update-index --index-info; git --git-dir "$0" write-tree`;
      const { stdout } = await this.run(['-c', script, this.dir, ...(base ? [base] : [])], { env: { GIT_INDEX_FILE: join(dir, 'index') }, input: lines.length > 0 ? `${lines.join('\n')}\n` : '' }, 'sh');
      return stdout.trim();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** A real three-way merge of two commits (git merge-tree --write-tree). */
  mergeTree(ours: string, theirs: string): Promise<{ clean: boolean; tree: string; conflicts: string[] }> {
    return this.cached(`merge-tree ${ours} ${theirs}`, [ours, theirs], async () => {
      const { stdout, code } = await this.run(['merge-tree', '--write-tree', '--name-only', '--no-messages', ours, theirs], { okCodes: [1] });
      const [tree, ...conflicts] = stdout.split('\n').filter((l) => l.length > 0);
      return { clean: code === 0, tree: tree!, conflicts };
    });
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

  /**
   * Files that differ between two commits, with line counts (one `git diff --raw --numstat`).
   * `sinceForkPoint` compares `to` with its merge base with `from` (a pull request's view).
   */
  diff(from: string, to: string, sinceForkPoint = false): Promise<ChangedFile[]> {
    return this.cached(`diff ${sinceForkPoint} ${from} ${to}`, [from, to], async () => {
      // With -z: raw records ":<modes> <shas> <letter>\0<path>\0", then numstat records "<add>\t<del>\t<path>\0".
      const range = sinceForkPoint ? [`${from}...${to}`] : [from, to];
      const fields = (await this.out(['diff', '--raw', '--numstat', '-z', '--no-renames', '--no-abbrev', ...range])).split('\0');
      const raw: Array<{ meta: string[]; path: string }> = [];
      const counts = new Map<string, [number, number]>();
      for (let i = 0; i < fields.length; i++) {
        const field = fields[i]!;
        if (field.startsWith(':')) raw.push({ meta: field.slice(1).split(' '), path: fields[++i]! });
        else if (field.length > 0) {
          const [add, del, path] = field.split('\t');
          counts.set(path!, [Number(add) || 0, Number(del) || 0]);
        }
      }
      return raw.map(({ meta, path }) => {
        const letter = meta[4] ?? 'M';
        const [additions, deletions] = counts.get(path) ?? [0, 0];
        return {
          path, status: letter === 'A' ? 'added' : letter === 'D' ? 'removed' : 'modified',
          sha: letter === 'D' ? null : meta[3]!, additions, deletions,
        } satisfies ChangedFile;
      });
    });
  }
}

// Object reads through one long-running `git cat-file --batch-command` per
// repository. Starting a git process costs ~5-8 ms; the simulator reads commits,
// trees and object types on almost every request, and a burst of rollbacks
// (the benchmark opens 100 PRs at once) would spend its time forking git.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export interface GitObject {
  sha: string;
  type: 'blob' | 'tree' | 'commit' | 'tag';
  size: number;
  /** Present for `contents` reads. */
  content?: Buffer;
}

interface Pending {
  withContent: boolean;
  resolve: (value: GitObject | undefined) => void;
  reject: (error: Error) => void;
}

export class ObjectReader {
  private readonly dir: string;
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly pending: Pending[] = [];
  private buffer: Buffer = Buffer.alloc(0);

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Type and size of an object (any revision expression, e.g. `sha^{tree}` or `sha:path`), or undefined. */
  info(spec: string): Promise<GitObject | undefined> {
    return this.ask('info', spec, false);
  }

  /** The object with its content, or undefined when there is none. */
  contents(spec: string): Promise<GitObject | undefined> {
    return this.ask('contents', spec, true);
  }

  close(): void {
    this.child?.stdin.end();
    this.child?.kill();
    this.child = undefined;
  }

  private ask(command: string, spec: string, withContent: boolean): Promise<GitObject | undefined> {
    // The protocol is line based: a name with a line break cannot name an object.
    if (/[\n\r]/.test(spec) || spec.length === 0) return Promise.resolve(undefined);
    const child = this.start();
    return new Promise((resolve, reject) => {
      this.pending.push({ withContent, resolve, reject });
      child.stdin.write(`${command} ${spec}\n`);
    });
  }

  private start(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const child = spawn('git', ['--git-dir', this.dir, 'cat-file', '--batch-command'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: this.dir, GIT_CONFIG_NOSYSTEM: '1', LC_ALL: 'C' },
    });
    child.stdout.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.drain();
    });
    const fail = (error: Error) => {
      if (this.child === child) this.child = undefined;
      for (const p of this.pending.splice(0)) p.reject(error);
      this.buffer = Buffer.alloc(0);
    };
    child.on('error', fail);
    child.on('exit', (code, signal) => fail(new Error(`git cat-file --batch-command exited (${code ?? signal})`)));
    child.stderr.resume();
    // Never keeps the process (or a test run) alive on its own: neither git nor its pipes.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
    this.child = child;
    return child;
  }

  /** Answers arrive in order: "<sha> <type> <size>\n[<content>\n]" or "<spec> missing\n". */
  private drain(): void {
    for (;;) {
      const next = this.pending[0];
      if (!next) return;
      const eol = this.buffer.indexOf(0x0a);
      if (eol < 0) return;
      const header = this.buffer.subarray(0, eol).toString('utf8').split(' ');
      if (header.length !== 3 || header[2] === 'missing' || header[1] === 'missing' || header[1] === 'ambiguous') {
        this.buffer = this.buffer.subarray(eol + 1);
        this.pending.shift();
        next.resolve(undefined);
        continue;
      }
      const [sha, type, sizeText] = header as [string, GitObject['type'], string];
      const size = Number(sizeText);
      if (!next.withContent) {
        this.buffer = this.buffer.subarray(eol + 1);
        this.pending.shift();
        next.resolve({ sha, type, size });
        continue;
      }
      if (this.buffer.length < eol + 1 + size + 1) return;
      const content = Buffer.from(this.buffer.subarray(eol + 1, eol + 1 + size));
      this.buffer = this.buffer.subarray(eol + 1 + size + 1);
      this.pending.shift();
      next.resolve({ sha, type, size, content });
    }
  }
}

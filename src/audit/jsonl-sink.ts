// The file side of the audit trail: one JSON line per record, one file per UTC
// day named like the Elasticsearch index the record belongs to, fsync'd after
// every batch so an acknowledged record survives a crash.
import { mkdir, open, readdir, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditSink } from './audit-log.ts';
import { auditIndexName, type AuditRecord } from './record.ts';

const FILE_PATTERN = /^ai-operator-audit-\d{4}\.\d{2}\.\d{2}\.jsonl$/;

export function auditFileName(at: Date | string): string {
  return `${auditIndexName(at)}.jsonl`;
}

/** Audit files of `dir`, oldest first (the date in the name sorts lexically). */
export async function listAuditFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => FILE_PATTERN.test(f)).sort();
}

/**
 * The records of one file. A last line without its newline is a write that a
 * crash cut short; it was never acknowledged, so it is left out. Any other bad
 * line is corruption and throws.
 */
export async function readAuditFile(path: string): Promise<AuditRecord[]> {
  const text = await readFile(path, 'utf8');
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  return complete
    .split('\n')
    .filter((line) => line !== '')
    .map((line, i) => {
      try {
        return JSON.parse(line) as AuditRecord;
      } catch (error) {
        throw new Error(`${path}:${i + 1}: not a JSON audit record`, { cause: error });
      }
    });
}

/** Every record of the directory in chain order, across days. */
export async function readAuditDir(dir: string): Promise<AuditRecord[]> {
  const records: AuditRecord[] = [];
  for (const file of await listAuditFiles(dir)) records.push(...(await readAuditFile(join(dir, file))));
  return records;
}

export class JsonlSink implements AuditSink {
  readonly name = 'file';
  readonly dir: string;
  #current: { file: string; handle: FileHandle } | undefined;
  // The newest record on disk: a batch offered again after a failure is written from after it.
  #lastHash: string | undefined;

  /** Creates the directory and cuts off a line a crash left half-written. */
  static async open(dir: string): Promise<JsonlSink> {
    await mkdir(dir, { recursive: true });
    const sink = new JsonlSink(dir);
    const newest = (await listAuditFiles(dir)).at(-1);
    if (newest !== undefined) await repairTail(join(dir, newest));
    sink.#lastHash = (await sink.tail(1)).at(-1)?.hash;
    return sink;
  }

  private constructor(dir: string) {
    this.dir = dir;
  }

  async write(records: readonly AuditRecord[]): Promise<void> {
    const seen = this.#lastHash === undefined ? -1 : records.findIndex((r) => r.hash === this.#lastHash);
    const todo = records.slice(seen + 1);
    // Records arrive in time order, so each day's records are one contiguous run.
    for (let start = 0; start < todo.length; ) {
      const file = auditFileName(todo[start]!.timestamp);
      let end = start;
      while (end < todo.length && auditFileName(todo[end]!.timestamp) === file) end++;
      const run = todo.slice(start, end);
      await this.#append(file, run);
      this.#lastHash = run.at(-1)!.hash;
      start = end;
    }
  }

  async tail(limit: number): Promise<AuditRecord[]> {
    const records: AuditRecord[] = [];
    const files = await listAuditFiles(this.dir);
    for (let i = files.length - 1; i >= 0 && records.length < limit; i--) {
      records.unshift(...(await readAuditFile(join(this.dir, files[i]!))));
    }
    return records.slice(-limit);
  }

  async close(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    await current?.handle.close();
  }

  async #append(file: string, records: readonly AuditRecord[]): Promise<void> {
    const handle = await this.#handleFor(file);
    const sizeBefore = (await handle.stat()).size;
    try {
      await handle.writeFile(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
      await handle.sync();
    } catch (error) {
      // Undo a partial write: the retry appends the whole run again and must not duplicate lines.
      await handle.truncate(sizeBefore).then(undefined, (undo: unknown) => {
        throw new AggregateError([error, undo], `Audit file ${file}: write failed and could not be undone`);
      });
      throw error;
    }
  }

  async #handleFor(file: string): Promise<FileHandle> {
    if (this.#current?.file === file) return this.#current.handle;
    await this.close();
    const path = join(this.dir, file);
    // 'ax' fails when the file exists: that tells a new file, whose directory entry needs its own fsync.
    const created = await open(path, 'ax').then(
      (handle) => handle,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'EEXIST') return undefined;
        throw error;
      },
    );
    const handle = created ?? (await open(path, 'a'));
    if (created) await syncDir(this.dir);
    this.#current = { file, handle };
    return handle;
  }
}

async function repairTail(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const text = await handle.readFile('utf8');
    const keep = Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1));
    if (keep < (await handle.stat()).size) {
      await handle.truncate(keep);
      await handle.sync();
    }
  } finally {
    await handle.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

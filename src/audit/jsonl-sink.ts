// The file side of the audit trail, and the spool in front of Elasticsearch: one
// JSON line per record, one file per UTC day named like the Elasticsearch index
// the record belongs to, fsync'd after every batch so an acknowledged record
// survives a crash. The shipper (shipper.ts) reads it back from a byte position.
import { mkdir, open, readdir, readFile, stat, type FileHandle } from 'node:fs/promises';
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

/** A place in the spool: a byte offset in one day's file, always at the end of a whole line. */
export interface SpoolPosition {
  file: string;
  offset: number;
}

export interface SpooledRecord {
  record: AuditRecord;
  /** Where the record's line ends: the position to resume from once it is shipped. */
  end: SpoolPosition;
}

const CHUNK = 1 << 20;

/**
 * Up to `max` records after `from` (the start of the oldest file when undefined),
 * never past `until` (the end of what is fsync'd). Only whole lines are read.
 */
export async function readSpool(dir: string, from: SpoolPosition | undefined, until: SpoolPosition, max: number): Promise<SpooledRecord[]> {
  const out: SpooledRecord[] = [];
  for (const file of await listAuditFiles(dir)) {
    if ((from !== undefined && file < from.file) || file > until.file) continue;
    const path = join(dir, file);
    const end = file === until.file ? until.offset : (await stat(path)).size;
    let offset = from !== undefined && file === from.file ? from.offset : 0;
    const handle = await open(path, 'r');
    try {
      while (offset < end && out.length < max) {
        const lines = await readLines(handle, offset, end);
        if (lines.length === 0) break;
        for (const { text, next } of lines) {
          out.push({ record: parseLine(path, text, offset), end: { file, offset: next } });
          offset = next;
          if (out.length >= max) break;
        }
      }
    } finally {
      await handle.close();
    }
    if (out.length >= max) break;
  }
  return out;
}

/** How many whole lines lie between `from` and `until`: the records spooled and not shipped. */
export async function countSpooled(dir: string, from: SpoolPosition | undefined, until: SpoolPosition): Promise<number> {
  let count = 0;
  for (;;) {
    const batch = await readSpool(dir, from, until, 10_000);
    if (batch.length === 0) return count;
    count += batch.length;
    from = batch.at(-1)!.end;
  }
}

/** The record whose line ends exactly at `at`, or undefined when no line ends there. */
export async function recordEndingAt(dir: string, at: SpoolPosition): Promise<AuditRecord | undefined> {
  const path = join(dir, at.file);
  const handle = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (handle === undefined) return undefined;
  try {
    if (at.offset <= 0 || at.offset > (await handle.stat()).size) return undefined;
    // Grow the window backwards until it holds the whole last line.
    for (let size = Math.min(CHUNK, at.offset); ; size = Math.min(size * 2, at.offset)) {
      const buffer = Buffer.alloc(size);
      await handle.read(buffer, 0, size, at.offset - size);
      if (buffer[size - 1] !== 0x0a) return undefined;
      const start = buffer.lastIndexOf(0x0a, size - 2) + 1;
      if (start > 0 || size === at.offset) return parseLine(path, buffer.subarray(start, size - 1).toString('utf8'), at.offset - size + start);
    }
  } catch (error) {
    if (error instanceof SyntaxError) return undefined;
    throw error;
  } finally {
    await handle.close();
  }
}

async function readLines(handle: FileHandle, offset: number, end: number): Promise<{ text: string; next: number }[]> {
  // Grow the chunk until it holds at least one whole line (a record larger than CHUNK).
  for (let size = Math.min(CHUNK, end - offset); ; size = Math.min(size * 2, end - offset)) {
    const buffer = Buffer.alloc(size);
    const { bytesRead } = await handle.read(buffer, 0, size, offset);
    const last = buffer.lastIndexOf(0x0a, bytesRead - 1);
    if (last >= 0) {
      const lines: { text: string; next: number }[] = [];
      for (let start = 0; start <= last; ) {
        const nl = buffer.indexOf(0x0a, start);
        lines.push({ text: buffer.subarray(start, nl).toString('utf8'), next: offset + nl + 1 });
        start = nl + 1;
      }
      return lines;
    }
    if (size >= end - offset) return [];
  }
}

function parseLine(path: string, text: string, offset: number): AuditRecord {
  try {
    return JSON.parse(text) as AuditRecord;
  } catch (error) {
    throw new SyntaxError(`${path}@${offset}: not a JSON audit record`, { cause: error });
  }
}

export class JsonlSink implements AuditSink {
  readonly name = 'file';
  readonly dir: string;
  #current: { file: string; handle: FileHandle } | undefined;
  // The newest record on disk: a batch offered again after a failure is written from after it.
  #lastHash: string | undefined;
  #durable: SpoolPosition | undefined;

  /** Creates the directory and cuts off a line a crash left half-written. */
  static async open(dir: string): Promise<JsonlSink> {
    await mkdir(dir, { recursive: true });
    const sink = new JsonlSink(dir);
    const newest = (await listAuditFiles(dir)).at(-1);
    if (newest !== undefined) {
      await repairTail(join(dir, newest));
      sink.#durable = { file: newest, offset: (await stat(join(dir, newest))).size };
    }
    sink.#lastHash = (await sink.tail(1)).at(-1)?.hash;
    return sink;
  }

  private constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * The end of the last line known to be fsync'd: a reader stops there, because a
   * line past it may still be undone (a failed write is truncated away).
   */
  get durableEnd(): SpoolPosition | undefined {
    return this.#durable;
  }

  /** Appends what it does not have yet; resolves with how many records that was. */
  async write(records: readonly AuditRecord[]): Promise<number> {
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
    return todo.length;
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
    const text = records.map((r) => `${JSON.stringify(r)}\n`).join('');
    try {
      await handle.writeFile(text);
      await handle.sync();
      this.#durable = { file, offset: sizeBefore + Buffer.byteLength(text) };
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

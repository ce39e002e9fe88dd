// Runs an Argo CD health script (config/argocd/health/*.lua) under the real Lua 5.1
// interpreter the way Argo CD runs it on gopher-lua (util/lua/lua.go): `obj` is the
// object as the API server returns it, turned into Lua tables; only the base and
// table libraries are there (Argo CD opens no string library, so `s:sub()` fails
// here as it would there); the chunk's return value is the health.
import { spawnSync } from 'node:child_process';
import { binaries } from '../../../dev/stack/binaries.ts';

export interface Health {
  status: string;
  message: string;
}

/** A Lua 5.1 string literal of the UTF-8 bytes of `text`: printable ASCII as is, every other byte as \ddd. */
export function luaString(text: string): string {
  let out = '"';
  for (const byte of Buffer.from(text, 'utf8')) {
    if (byte === 0x5c) out += '\\\\';
    else if (byte === 0x22) out += '\\"';
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += `\\${String(byte).padStart(3, '0')}`;
  }
  return `${out}"`;
}

/** A Lua table constructor for a JSON value, as Argo CD's decodeValue builds it (null and absent keys are nil). */
export function luaLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`not a JSON number: ${value}`);
    return String(value);
  }
  if (typeof value === 'string') return luaString(value);
  if (Array.isArray(value)) return `{${value.map(luaLiteral).join(', ')}}`;
  if (typeof value === 'object') {
    const fields = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `[${luaString(k)}] = ${luaLiteral(v)}`);
    return `{${fields.join(', ')}}`;
  }
  throw new Error(`not a JSON value: ${typeof value}`);
}

const SANDBOX = ['assert', 'error', 'getmetatable', 'ipairs', 'next', 'pairs', 'pcall', 'print', 'rawequal', 'rawget', 'rawset', 'select', 'setmetatable', 'tonumber', 'tostring', 'type', 'unpack', 'xpcall'];

/** The health `script` gives `object` (JSON, as read from the API server), on Lua 5.1. */
export async function runHealthLua(script: string, object: unknown): Promise<Health> {
  const { lua } = await binaries('lua');
  const program = [
    `local chunk = assert(loadstring(${luaString(script)}, "=health.lua"))`,
    `local env = { obj = ${luaLiteral(JSON.parse(JSON.stringify(object)))}, table = table }`,
    ...SANDBOX.map((name) => `env.${name} = ${name}`),
    // No string library in Argo CD: neither the global nor the methods on strings.
    'getmetatable("").__index = nil',
    'setfenv(chunk, env)',
    'local ok, hs = pcall(chunk)',
    'if not ok then io.stderr:write("health.lua failed: ", tostring(hs)) os.exit(3) end',
    'if type(hs) ~= "table" then io.stderr:write("health.lua returned a ", type(hs), ", not a table") os.exit(4) end',
    'if type(hs.status) ~= "string" or type(hs.message) ~= "string" then io.stderr:write("status and message must be strings, got ", type(hs.status), " and ", type(hs.message)) os.exit(5) end',
    'io.write(hs.status, "\\n", hs.message)',
  ].join('\n');
  const run = spawnSync(lua!, ['-'], { input: program, encoding: 'utf8', timeout: 10_000 });
  if (run.status !== 0) throw new Error(`lua5.1 exited ${run.status}: ${run.stderr || run.error?.message}`);
  const at = run.stdout.indexOf('\n');
  return { status: run.stdout.slice(0, at), message: run.stdout.slice(at + 1) };
}

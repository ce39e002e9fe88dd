import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));
const run = promisify(execFile);

async function cliRun(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH, ...env }, timeout: 20_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

// The command's glue; the verification itself is tested in audit/verify.test.ts, and against Elasticsearch in test/e2e.
// Each case starts a Node process: seconds on a busy CI machine, not the unit default of 5.
describe('node src/cli.ts', { timeout: 30_000 }, () => {
  it('exits 2 with the usage for an unknown command or a bad option', async () => {
    for (const args of [[], ['audit'], ['audit', 'verify'], ['audit', 'verify', '--since', 'yesterday']]) {
      const result = await cliRun(args);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('usage: node src/cli.ts audit verify --since');
    }
  });

  it('exits 2 naming a bad ELASTICSEARCH_URL, never echoing the API key', async () => {
    const result = await cliRun(['audit', 'verify', '--since', '24h'], { ELASTICSEARCH_URL: 'ftp://es', ELASTICSEARCH_API_KEY: 'a secret' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('ELASTICSEARCH_URL: expected a http or https URL');
    expect(result.stderr).toContain('ELASTICSEARCH_API_KEY: expected a token without whitespace, got (value hidden)');
    expect(result.stderr).not.toContain('secret');
  });

  it('exits 3 when Elasticsearch cannot be read', async () => {
    const result = await cliRun(['audit', 'verify', '--since', '24h'], { ELASTICSEARCH_URL: 'http://127.0.0.1:1' });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/^Could not read the audit trail from Elasticsearch: auditRead: UNAVAILABLE/);
  });
});

// The alert rules under config/prometheus/alerts/ are checked by the real
// promtool (the one the stack's Prometheus comes with): every rule file has a
// `promtool test rules` file beside it, and every such test passes.
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { binaries } from '../../dev/stack/binaries.ts';

const run = promisify(execFile);
const ALERTS = fileURLToPath(new URL('../../config/prometheus/alerts/', import.meta.url));

const files = await readdir(ALERTS);
const ruleFiles = files.filter((f) => f.endsWith('.rules.yaml'));
const testFiles = files.filter((f) => f.endsWith('.rules.test.yaml'));

describe('alert rules', () => {
  it('has a promtool test beside every rule file', () => {
    expect(ruleFiles.length).toBeGreaterThan(0);
    expect(testFiles.sort()).toEqual(ruleFiles.map((f) => f.replace(/\.rules\.yaml$/, '.rules.test.yaml')).sort());
  });

  it.each(testFiles)('%s passes promtool test rules', async (file) => {
    const { promtool } = await binaries('prometheus');
    // promtool resolves rule_files against the test file's directory.
    const result = await run(promtool!, ['test', 'rules', file], { cwd: ALERTS }).then(
      ({ stdout, stderr }) => ({ ok: true, output: `${stdout}${stderr}` }),
      (error: { stdout?: string; stderr?: string; message: string }) => ({ ok: false, output: `${error.stdout ?? ''}${error.stderr ?? ''}` || error.message }),
    );
    expect(result.ok, `promtool test rules ${file}:\n${result.output}`).toBe(true);
  });
});

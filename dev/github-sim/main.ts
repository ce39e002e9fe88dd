// The GitHub simulator as a process, for the demo or a person at a terminal:
//   node dev/github-sim/main.ts [--root DIR] [--port N] [--no-validate] [--strict] [--rate-limit N] [--user LOGIN[:TOKEN]]...
//     [--secondary-limits] [--secondary-content-per-minute N] [--secondary-content-per-hour N]
//     [--secondary-points-per-minute N] [--secondary-concurrency N]
// --secondary-limits enforces GitHub's documented secondary limits (80 content-creating requests a minute,
// 500 an hour, 900 points a minute per endpoint, 100 requests in flight) per login; each --secondary-* flag
// sets one limit (alone, it enforces only that one). Off by default.
// Prints one JSON line {url, root, tokens} when ready, then serves until SIGINT/SIGTERM.
// Repositories, CI and faults are set through the control API (POST /_sim/<method>).
import { parseArgs } from 'node:util';
import { GITHUB_SECONDARY_LIMITS, startGitHubSim, type SecondaryLimits } from './index.ts';

const { values } = parseArgs({
  options: {
    root: { type: 'string' },
    port: { type: 'string' },
    'no-validate': { type: 'boolean', default: false },
    strict: { type: 'boolean', default: false },
    'rate-limit': { type: 'string' },
    user: { type: 'string', multiple: true, default: [] },
    'secondary-limits': { type: 'boolean', default: false },
    'secondary-content-per-minute': { type: 'string' },
    'secondary-content-per-hour': { type: 'string' },
    'secondary-points-per-minute': { type: 'string' },
    'secondary-concurrency': { type: 'string' },
  },
});

const count = (flag: string, value: string | undefined): number | undefined => {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${flag}: expected a positive integer, got ${JSON.stringify(value)}`);
  return n;
};
const secondaryLimits: SecondaryLimits = { ...(values['secondary-limits'] ? GITHUB_SECONDARY_LIMITS : {}) };
for (const [flag, field] of [['secondary-content-per-minute', 'contentPerMinute'], ['secondary-content-per-hour', 'contentPerHour'], ['secondary-points-per-minute', 'pointsPerMinute'], ['secondary-concurrency', 'concurrency']] as const) {
  const n = count(flag, values[flag]);
  if (n !== undefined) secondaryLimits[field] = n;
}

const sim = await startGitHubSim({
  validate: !values['no-validate'],
  strict: values.strict,
  ...(values.root ? { root: values.root } : {}),
  ...(values.port ? { port: Number(values.port) } : {}),
  ...(values['rate-limit'] ? { rateLimit: Number(values['rate-limit']) } : {}),
  ...(Object.keys(secondaryLimits).length > 0 ? { secondaryLimits } : {}),
});
const tokens: Record<string, string> = {};
for (const spec of values.user) {
  const [login, token] = spec.split(':');
  tokens[login!] = sim.control.addUser({ login: login!, ...(token ? { token } : {}) }).token;
}
process.stdout.write(`${JSON.stringify({ url: sim.url, root: sim.root, tokens })}\n`);

const stop = async () => {
  const violations = sim.violations();
  if (violations.length > 0) process.stderr.write(`${violations.length} answers GitHub would not have sent:\n${violations.join('\n')}\n`);
  await sim.stop();
  process.exit(violations.length > 0 ? 1 : 0);
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());

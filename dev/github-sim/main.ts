// The GitHub simulator as a process, for the demo or a person at a terminal:
//   node dev/github-sim/main.ts [--root DIR] [--port N] [--no-validate] [--strict] [--rate-limit N] [--user LOGIN[:TOKEN]]...
// Prints one JSON line {url, root, tokens} when ready, then serves until SIGINT/SIGTERM.
// Repositories, CI and faults are set through the control API (POST /_sim/<method>).
import { parseArgs } from 'node:util';
import { startGitHubSim } from './index.ts';

const { values } = parseArgs({
  options: {
    root: { type: 'string' },
    port: { type: 'string' },
    'no-validate': { type: 'boolean', default: false },
    strict: { type: 'boolean', default: false },
    'rate-limit': { type: 'string' },
    user: { type: 'string', multiple: true, default: [] },
  },
});

const sim = await startGitHubSim({
  validate: !values['no-validate'],
  strict: values.strict,
  ...(values.root ? { root: values.root } : {}),
  ...(values.port ? { port: Number(values.port) } : {}),
  ...(values['rate-limit'] ? { rateLimit: Number(values['rate-limit']) } : {}),
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

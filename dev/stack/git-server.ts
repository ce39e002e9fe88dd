// Serves a directory of bare repositories read-only over git:// with the real
// `git daemon`, so Argo CD clones what the tests (or the GitHub simulator,
// whose repositories are `${root}/${owner}/${repo}.git`) push and merge:
// `${url}/${owner}/${repo}.git` is `${root}/${owner}/${repo}.git`.
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

export interface GitServer {
  /** git://127.0.0.1:PORT — append `/<path under root>` for a repository's URL. */
  url: string;
  root: string;
  process: ManagedProcess;
}

export function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => { socket.end(); resolve(true); });
    socket.setTimeout(2000, () => { socket.destroy(); resolve(false); });
    socket.once('error', () => resolve(false));
  });
}

export async function startGitServer(workDir: string, root: string, name = 'git-daemon'): Promise<GitServer> {
  mkdirSync(root, { recursive: true });
  const port = await freePort();
  const proc = spawnManaged(name, 'git', [
    'daemon', '--reuseaddr', '--listen=127.0.0.1', `--port=${port}`,
    // Every repository under root, without a git-daemon-export-ok file in each.
    `--base-path=${root}`, '--export-all', '--informative-errors', root,
  ], join(workDir, `${name}.log`));
  await waitHealthy(proc, () => tcpOpen(port), 30_000);
  return { url: `git://127.0.0.1:${port}`, root, process: proc };
}

// A real Elasticsearch (minimal distribution) on loopback, single node, small heap,
// run as a dedicated non-root user because it refuses to run as root.
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { binaries } from './binaries.ts';
import { freePort, httpOk, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

export interface ElasticsearchInstance {
  url: string;
  process: ManagedProcess;
}

function ownerIds(user: string | undefined): { uid?: number; gid?: number } {
  if (!user) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

function chownTree(path: string, uid: number, gid: number): void {
  execFileSync('chown', ['-R', `${uid}:${gid}`, path]);
}

/** `port`: the HTTP port to listen on (a restart on the same workDir and port keeps the URL and the data). */
export async function startElasticsearch(workDir: string, options: { port?: number } = {}): Promise<ElasticsearchInstance> {
  const found = await binaries('elasticsearch');
  const home = join(found.elasticsearch!, '..', '..');
  const { uid, gid } = ownerIds(found['elasticsearch-user']);
  const dir = join(workDir, 'elasticsearch');
  const conf = join(dir, 'config');
  mkdirSync(join(dir, 'data'), { recursive: true });
  mkdirSync(join(dir, 'logs'), { recursive: true });
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  // A private config dir: Elasticsearch writes its keystore there on start.
  cpSync(join(home, 'config'), conf, { recursive: true });
  if (uid !== undefined && gid !== undefined) {
    chmodSync(workDir, 0o711);
    chownTree(dir, uid, gid);
  }
  const [port, transportPort] = [options.port ?? (await freePort()), await freePort()];
  const url = `http://127.0.0.1:${port}`;
  // setpriv execs Elasticsearch as its own user, with no process in between to
  // lose signals: the tether (running as us) stops it directly.
  const asUser = uid === undefined ? [] : ['--reuid', String(uid), '--regid', String(gid), '--init-groups', '--'];
  const command = uid === undefined ? found.elasticsearch! : 'setpriv';
  const proc = spawnManaged('elasticsearch', command, [...asUser, ...(uid === undefined ? [] : [found.elasticsearch!]),
    '-E', 'discovery.type=single-node',
    '-E', 'network.host=127.0.0.1',
    '-E', `http.port=${port}`,
    '-E', `transport.port=${transportPort}`,
    '-E', `path.data=${join(dir, 'data')}`,
    '-E', `path.logs=${join(dir, 'logs')}`,
    '-E', 'cluster.routing.allocation.disk.threshold_enabled=false',
    '-E', 'action.auto_create_index=true',
    // Loopback-only test node: no TLS or users to provision.
    '-E', 'xpack.security.enabled=false',
  ], join(workDir, 'elasticsearch.log'), {
    env: {
      PATH: process.env.PATH,
      ES_JAVA_HOME: found['es-java-home'],
      ES_PATH_CONF: conf,
      ES_TMPDIR: join(dir, 'tmp'),
      ES_JAVA_OPTS: '-Xms384m -Xmx384m',
    },
  });
  await waitHealthy(proc, () => httpOk(`${url}/_cluster/health?wait_for_status=yellow&timeout=1s`), 120_000);
  return { url, process: proc };
}

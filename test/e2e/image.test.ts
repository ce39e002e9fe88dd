// The operator's image, built for real from the Dockerfile by buildah
// (dev/scripts/image.sh, `make image`; cached by the hash of its inputs) and run
// under podman the way config/manager/manager.yaml runs it: uid 1000, a
// read-only root filesystem, the audit spool a volume and /tmp a small tmpfs, no
// capability, no privilege escalation. It carries a staging rollback on the real
// stack to RollbackComplete.
import { execFile, spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const run = promisify(execFile);
const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

type Json = Record<string, any>;
const IMAGE_SH = join(repoRoot, 'dev/scripts/image.sh');
// Raising an rlimit in a container is refused on this machine kind; lowering one is not (STACK-NOTES).
const RUNTIME = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
const read = (file: string) => readFileSync(join(repoRoot, file), 'utf8');

let image = '';
let size = 0;
beforeAll(async () => {
  const started = Date.now();
  const { stdout, stderr } = await run('bash', [IMAGE_SH, 'build'], { timeout: 40 * 60_000, maxBuffer: 64 << 20 });
  const out = Object.fromEntries(stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  image = out.image!;
  size = Number(out.size);
  const built = /^image: built in (\d+) s$/m.exec(stderr);
  console.log(`image ${image} (${(size / 1e6).toFixed(0)} MB): ${built ? `built in ${built[1]} s` : 'cached'}, make image took ${((Date.now() - started) / 1000).toFixed(1)} s${/building the base/.test(stderr) ? ' (base built too)' : ''}`);
}, 45 * 60_000);

const podman = async (args: string[]) => (await run('bash', [IMAGE_SH, 'podman', ...args], { timeout: 120_000, maxBuffer: 32 << 20 })).stdout;

describe('the image', () => {
  it('is what the Dockerfile says: user 1000, npm start, production dependencies only, no tests, no dev/', async () => {
    const [inspected] = JSON.parse(await podman(['image', 'inspect', image])) as Json[];
    const pkg = JSON.parse(read('package.json')) as { scripts: { start: string }; dependencies: Record<string, string>; devDependencies: Record<string, string> };
    expect(inspected!.Config.User).toBe('1000:1000');
    expect(inspected!.Config.Cmd.join(' ')).toBe(pkg.scripts.start);
    expect(inspected!.Config.WorkingDir).toBe('/app');
    expect(inspected!.Config.Env).toContain('NODE_ENV=production');

    // What is in /app, listed by the image's own node as the image's user.
    const script = `
      const fs = require('node:fs'), path = require('node:path');
      const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
      const top = fs.readdirSync('/app').sort();
      const modules = fs.readdirSync('/app/node_modules').flatMap((n) => n.startsWith('@') ? fs.readdirSync('/app/node_modules/' + n).map((m) => n + '/' + m) : [n]);
      console.log(JSON.stringify({ uid: process.getuid(), node: process.version, top, src: walk('/app/src').map((f) => f.slice(5)), schemas: walk('/app/schemas').length, modules }));`;
    const listing = JSON.parse(await podman(['run', '--rm', '--network=none', ...RUNTIME, '--read-only', image, 'node', '-e', script])) as
      { uid: number; node: string; top: string[]; src: string[]; schemas: number; modules: string[] };
    const pinned = /^NODE_VERSION=(\S+)$/m.exec(read('dev/scripts/provision.sh'))![1]!;
    console.log(`image contents: /app = ${listing.top.join(', ')}; ${listing.src.length} files in src/, ${listing.modules.length} packages in node_modules; Node ${listing.node}`);
    expect(listing.uid).toBe(1000);
    expect(listing.node).toBe(`v${pinned}`);
    expect(listing.top).toEqual(['node_modules', 'package.json', 'schemas', 'src']);
    expect(listing.src.filter((f) => f.endsWith('.test.ts'))).toEqual([]);
    expect(listing.src).toContain('src/main.ts');
    expect(listing.schemas).toBe(readdirSync(join(repoRoot, 'schemas'), { recursive: true }).filter((f) => statSync(join(repoRoot, 'schemas', String(f))).isFile()).length);
    // npm ci --omit=dev: every dependency, no devDependency (unless a dependency itself needs the same package).
    for (const name of Object.keys(pkg.dependencies)) expect(listing.modules).toContain(name);
    const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([p, v]) => p.startsWith('node_modules/') && v.dev).map(([p]) => p.slice('node_modules/'.length)).filter((p) => !p.includes('/node_modules/'));
    expect(devOnly.length).toBeGreaterThan(0);
    expect(listing.modules.filter((m) => devOnly.includes(m))).toEqual([]);
    // A devDependency a dependency also needs (@types/node, by @kubernetes/client-node) is a production package.
    for (const name of Object.keys(pkg.devDependencies)) if (lock.packages[`node_modules/${name}`]?.dev) expect(listing.modules).not.toContain(name);
    for (const name of ['typescript', 'vitest', 'fast-check', 'dependency-cruiser']) expect(listing.modules).not.toContain(name);
    console.log(`image size ${(size / 1e6).toFixed(0)} MB`);
    expect(size).toBeGreaterThan(100e6);
  });

  it('sizes V8\'s heap from the container\'s memory limit: the Dockerfile\'s percentage of it, under the chart\'s limit and a smaller one', async () => {
    const [inspected] = JSON.parse(await podman(['image', 'inspect', image])) as Json[];
    const percent = Number(/^NODE_OPTIONS=--max-old-space-size-percentage=(\d+)$/m.exec((inspected!.Config.Env as string[]).join('\n'))?.[1]);
    expect(percent).toBeGreaterThan(0);
    const chartLimit = (parse(read('charts/ai-operator/values.yaml')) as Json).resources.limits.memory as string;
    const heapUnder = async (memory: string) => {
      const out = await podman(['run', '--rm', '--network=none', ...RUNTIME, '--read-only', `--memory=${memory}`, image, 'node', '-p',
        'JSON.stringify({ heap: require("node:v8").getHeapStatistics().heap_size_limit, limit: process.constrainedMemory() })']);
      return JSON.parse(out) as { heap: number; limit: number };
    };
    for (const memory of [chartLimit, '512Mi']) {
      const quantity = /^(\d+)(Mi|Gi)$/.exec(memory);
      if (!quantity) throw new Error(`resources.limits.memory ${memory}: this test reads Mi or Gi only`);
      const bytes = Number(quantity[1]) * (quantity[2] === 'Gi' ? 2 ** 30 : 2 ** 20);
      const { heap, limit } = await heapUnder(memory.replace(/i$/, '').toLowerCase());
      console.log(`--memory=${memory}: the container's limit ${(limit / 2 ** 20).toFixed(0)} MiB, V8's heap limit ${(heap / 2 ** 20).toFixed(0)} MiB`);
      expect(limit).toBe(bytes);
      // Old space is the percentage of the limit; the young generation comes on top of it (16 MiB semi-spaces, three of them).
      expect(heap).toBeGreaterThanOrEqual((bytes * percent) / 100);
      expect(heap).toBeLessThan((bytes * percent) / 100 + 64 * 2 ** 20);
    }
  });
});

describe('the operator from the image', () => {
  it('as uid 1000 on a read-only root filesystem (spool volume, /tmp tmpfs), with the real stack, carries a staging rollback to RollbackComplete', async () => {
    const manager = parse(read('config/manager/manager.yaml')) as Json;
    const pod = manager.spec.template.spec;
    const container = pod.containers[0];
    const spoolMount = (container.volumeMounts as Json[]).find((m) => m.name === 'audit-spool')!.mountPath as string;
    const tmpVolume = (pod.volumes as Json[]).find((v) => v.name === 'tmp')!;
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });

    // Given the spool directory, the image user's (the Deployment's fsGroup makes its volume so)
    const dir = mkdtempSync(join(tmpdir(), 'ai-operator-image-'));
    const spool = join(dir, 'spool');
    mkdirSync(spool);
    chownSync(spool, pod.securityContext.runAsUser, pod.securityContext.fsGroup);
    // And the stack's admin kubeconfig (certificates inline) readable in the container
    const kubeconfig = join(dir, 'kubeconfig');
    copyFileSync(stack.kubeconfig, kubeconfig);
    chmodSync(kubeconfig, 0o644);
    const name = `ai-operator-e2e-${process.pid}-${Date.now().toString(36)}`;
    stoppers.push(async () => { await run('bash', [IMAGE_SH, 'podman', 'rm', '--force', '--ignore', name]).catch(() => undefined); });

    // When the operator runs from the image, as config/manager/manager.yaml runs it
    const launch = (env: Record<string, string>) => {
      // The runner's PATH, HOME and compile cache are the host's, not the image's.
      const { PATH: _path, HOME: _home, NODE_COMPILE_CACHE: _cache, KUBECONFIG: _kc, AUDIT_FALLBACK_DIR: _spool, ...rest } = env;
      const args = [
        'run', '--rm', '--name', name, '--network=host', ...RUNTIME,
        '--user', `${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`,
        '--read-only', '--read-only-tmpfs=false', '--tmpfs', `/tmp:rw,size=${tmpVolume.emptyDir.sizeLimit.replace('Mi', 'm')},mode=1777`,
        '--cap-drop=ALL', '--security-opt=no-new-privileges',
        '--volume', `${spool}:${spoolMount}`, '--volume', `${kubeconfig}:/etc/ai-operator/kubeconfig:ro`,
        '--env', 'KUBECONFIG=/etc/ai-operator/kubeconfig', '--env', `AUDIT_FALLBACK_DIR=${spoolMount}`,
        ...Object.entries(rest).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
        image,
      ];
      return spawn('bash', [IMAGE_SH, 'podman', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    };
    const started = Date.now();
    const s = await givenRollbackScenario(stack, 'image', { environment: 'staging', launch, startOperator: false }, stoppers);
    const logs = () => s.logs();
    const operator = await s.startOperator();
    // It serves the Deployment's probes on its port (host network)
    for (const probe of [container.startupProbe, container.readinessProbe]) {
      await eventually(`GET ${probe.httpGet.path}`, async () => (await fetch(`http://127.0.0.1:${operator.httpPort}${probe.httpGet.path}`)).status === 200, 90_000)
        .catch((error: Error) => { throw new Error(`${error.message}\n${logs()}`); });
    }
    console.log(`image: the operator was ready ${((Date.now() - started) / 1000).toFixed(1)} s after the scenario began`);

    // And a bad release lands
    await s.release('v2', true);
    const pr = await s.firstPull(90_000).catch((error: Error) => { throw new Error(`${error.message}\n${logs()}`); });
    s.ci(pr.headSha, 'success');

    // Then the operator in the image rolls it back to RollbackComplete
    const record = await s.inState('RollbackComplete', 120_000).catch((error: Error) => { throw new Error(`${error.message}\n${logs()}`); });
    console.log(`image: staging rollback to RollbackComplete in ${((Date.now() - started) / 1000).toFixed(1)} s (correlationId ${record.correlationId})`);
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ merged: true });
    // Its audit records went through the spool volume, written by uid 1000
    const written = readdirSync(spool, { recursive: true }).map(String).filter((f) => statSync(join(spool, f)).isFile());
    expect(written.length).toBeGreaterThan(0);
    expect(written.every((f) => statSync(join(spool, f)).uid === 1000)).toBe(true);
    // And nothing but the volumes is writable: the root filesystem refuses a write
    const touch = await run('bash', [IMAGE_SH, 'podman', 'exec', name, 'sh', '-c', 'touch /app/x 2>&1; id -u'], { timeout: 30_000 }).catch((e: { stdout: string }) => ({ stdout: e.stdout }));
    expect(touch.stdout).toMatch(/Read-only file system/);
    expect(touch.stdout.trim().split('\n').at(-1)).toBe('1000');
  }, 300_000);
});

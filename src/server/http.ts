// The HTTP surface of SPEC §11: liveness, readiness and metrics. (The reset
// endpoint, which needs TokenReview + SubjectAccessReview, comes with the
// operations work; until then reset is by annotation.)
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface HttpOptions {
  port: number;
  host?: string;
  registry: Registry;
  /**
   * Ready when etcd and NATS are connected and the watches synced; the reasons when not.
   * It must settle within a probe's timeout: build it with readinessProbe (./readiness.ts).
   */
  readiness: () => Promise<string[]>;
}

export async function startHttp(options: HttpOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => res.writeHead(status, { 'content-type': type }).end(body);
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return reply(405, 'method not allowed\n');
    if (path === '/healthz') return reply(200, 'ok\n');
    if (path === '/readyz') {
      options.readiness().then(
        (problems) => (problems.length === 0 ? reply(200, 'ok\n') : reply(503, `${problems.join('\n')}\n`)),
        (error: Error) => reply(503, `${error.message}\n`),
      );
      return;
    }
    if (path === '/metrics') {
      options.registry.metrics().then((text) => reply(200, text, options.registry.contentType), (error: Error) => reply(500, `${error.message}\n`));
      return;
    }
    return reply(404, 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
  });
  return server;
}

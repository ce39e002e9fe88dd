// The HTTP surface of SPEC §11: liveness, readiness, metrics, and the
// authenticated POST /reset/{correlationId} (./reset.ts).
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { RESET_PATH_PREFIX, type ResetHandler } from './reset.ts';

export interface HttpOptions {
  port: number;
  host?: string;
  registry: Registry;
  /**
   * Ready when etcd and NATS are connected and the watches synced; the reasons when not.
   * It must settle within a probe's timeout: build it with readinessProbe (./readiness.ts).
   */
  readiness: () => Promise<string[]>;
  /** POST /reset/{correlationId}; without it the path is not served. */
  reset?: ResetHandler;
}

export async function startHttp(options: HttpOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => res.writeHead(status, { 'content-type': type }).end(body);
    const path = (req.url ?? '/').split('?')[0]!;
    if (options.reset && path.startsWith(RESET_PATH_PREFIX)) {
      if (req.method !== 'POST') return res.writeHead(405, { allow: 'POST', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      // The body means nothing here; read it so the connection can be reused.
      req.resume();
      options.reset({ path, authorization: req.headers.authorization }).then(
        (answer) => res.writeHead(answer.status, { ...answer.headers, 'content-type': 'application/json' }).end(`${JSON.stringify(answer.body)}\n`),
        (error: Error) => reply(500, `${error.message}\n`),
      );
      return;
    }
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

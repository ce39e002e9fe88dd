// Wiring only: configuration → ports → reconcilers → HTTP server.
import { createServer } from 'node:http';
import { ConfigErrors, loadConfig, type Config } from './config.ts';
import { createLogger } from './observability/log.ts';

function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigErrors) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

const config = configOrExit();
const log = createLogger(config.logLevel).child('main');
log.info('Loaded configuration', {
  pollIntervalSec: config.pollIntervalSec,
  persistenceChecks: config.degradationPersistenceChecks,
  githubApiUrl: config.githubApiUrl,
  githubAuth: config.githubAuth.kind,
  monitoredApps: config.monitoredApps.length,
  dryRun: config.dryRun,
});

const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
});
server.listen(config.httpPort, () => log.info('Serving HTTP', { port: config.httpPort }));

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    log.info('Shutting down', { signal });
    server.close(() => process.exit(0));
  });
}

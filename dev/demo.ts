// `make demo`: brings the local real stack up, installs the CRDs and the sample
// RollbackPolicies, prints where everything listens and stays up until Ctrl-C.
//   node dev/demo.ts [--no-wait]   (--no-wait: tear down right after set-up)
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { endpointsOf, startStack } from './stack/index.ts';
import { installCrds, kubectlOk } from './stack/kubectl.ts';

const noWait = process.argv.includes('--no-wait');
const step = (text: string) => process.stdout.write(`\n==> ${text}\n`);

step('Starting the local stack (etcd, kube-apiserver, NATS JetStream, Prometheus, Elasticsearch)');
const started = Date.now();
const stack = await startStack();
const endpoints = endpointsOf(stack);
let stopping = false;
const shutdown = async (code: number) => {
  if (stopping) return;
  stopping = true;
  step('Stopping the stack');
  await stack.stop();
  process.exit(code);
};
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  step(`Stack up in ${((Date.now() - started) / 1000).toFixed(1)} s; installing CRDs and sample policies`);
  await installCrds(endpoints);
  await kubectlOk(endpoints, ['create', 'namespace', 'argocd']);
  process.stdout.write(await kubectlOk(endpoints, ['apply', '-f', 'config/samples/']));

  const envFile = join(stack.workDir, 'demo.env');
  writeFileSync(envFile, `export KUBECONFIG=${endpoints.kubeconfig}\nexport PATH=${join(endpoints.kubectl, '..')}:$PATH\n`);
  step('Where each component listens');
  const rows: Array<[string, string]> = [
    ['etcd (operator state)', endpoints.etcd],
    ['kube-apiserver', endpoints.kubeUrl],
    ['NATS JetStream', endpoints.nats],
    ['Prometheus', endpoints.prometheus],
    ['Elasticsearch', endpoints.elasticsearch],
    ['kubeconfig', endpoints.kubeconfig],
  ];
  for (const [name, where] of rows) process.stdout.write(`  ${name.padEnd(24)} ${where}\n`);

  step('Sample RollbackPolicies, as the API server stored them');
  process.stdout.write(await kubectlOk(endpoints, ['get', 'rollbackpolicies', '-n', 'argocd']));

  step('Try it in another terminal');
  process.stdout.write(`  source ${envFile}\n  kubectl get rollbackpolicies,rollbackattempts -A\n`);
  process.stdout.write(`  kubectl apply -f - <<< '{"apiVersion":"ai-operator.io/v1alpha1","kind":"RollbackPolicy","metadata":{"name":"bad","namespace":"argocd"},"spec":{"candidate":{"minUptime":1.5}}}'   # rejected by the API server\n`);
  if (noWait) {
    await shutdown(0);
  } else {
    process.stdout.write('\nThe stack stays up until Ctrl-C.\n');
  }
} catch (error) {
  process.stderr.write(`demo failed: ${(error as Error).message}\n`);
  await shutdown(1);
}

// Starts the real stack once for the e2e run and stops it afterwards, whatever
// happened in between. Tests reach it through inject('stack').
import type { TestProject } from 'vitest/node';
import { endpointsOf, startStack, type Stack, type StackEndpoints } from '../../dev/stack/index.ts';
import { backfilledHistory } from './fixtures/history.ts';
import { installCrds } from './support/kube.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: StackEndpoints;
    historyEnd: number;
  }
}

let stack: Stack | undefined;

export async function setup(project: TestProject): Promise<void> {
  const history = backfilledHistory();
  const started = Date.now();
  // Real Argo CD on a cluster of its own (gitops-cluster.ts), beside the simulator-based tests' API server.
  stack = await startStack({ prometheusHistory: history.samples, keepData: process.env.KEEP_STACK_DATA === '1', argocd: true });
  const endpoints = endpointsOf(stack);
  await installCrds(endpoints);
  console.log(`e2e stack started in ${((Date.now() - started) / 1000).toFixed(1)} s (the GitOps cluster with Argo CD: ${((stack.argocd?.startupMs ?? 0) / 1000).toFixed(1)} s of it, in parallel)`);
  project.provide('stack', endpoints);
  project.provide('historyEnd', history.end);
}

export async function teardown(): Promise<void> {
  await stack?.stop();
}

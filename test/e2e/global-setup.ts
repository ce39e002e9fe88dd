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
  // Real Argo CD (its own cluster, ≈0.5 GiB) only when asked, until provision.sh all builds it.
  const argocd = process.env.AI_OPERATOR_E2E_ARGOCD === '1';
  stack = await startStack({ prometheusHistory: history.samples, keepData: process.env.KEEP_STACK_DATA === '1', argocd });
  const endpoints = endpointsOf(stack);
  await installCrds(endpoints);
  project.provide('stack', endpoints);
  project.provide('historyEnd', history.end);
}

export async function teardown(): Promise<void> {
  await stack?.stop();
}

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
  stack = await startStack({ prometheusHistory: history.samples, keepData: process.env.KEEP_STACK_DATA === '1' });
  const endpoints = endpointsOf(stack);
  await installCrds(endpoints);
  project.provide('stack', endpoints);
  project.provide('historyEnd', history.end);
}

export async function teardown(): Promise<void> {
  await stack?.stop();
}

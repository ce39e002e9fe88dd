// What both ways of running the demo share: the apps, the repository, the
// approver, and what a way of running it (real Argo CD, or the simulator) must
// provide for the same story to be told on it.
import type { GitHubSim } from '../github-sim/index.ts';
import type { KubectlTarget } from '../stack/kubectl.ts';
import type { Stack, StackOptions } from '../stack/index.ts';

export const APPS = [
  { name: 'payment-service', environment: 'staging' },
  { name: 'order-service', environment: 'production' },
] as const;
export const REPO = { owner: 'acme', repo: 'gitops' } as const;
export const APPROVER = 'sre-oncall@example.com';
export const RELEASES = ['v1', 'v2', 'v3'] as const;
export const HOUR = 3600;

export const say = (text: string): void => { process.stdout.write(`\n==> ${text}\n`); };
/** A command's output under the command, indented like the rest of the demo's asides. */
export const show = (command: string, output: string): void => {
  process.stdout.write(`  $ ${command}\n${output.trimEnd().split('\n').map((line) => `  ${line}`).join('\n')}\n`);
};

export interface DemoContext {
  stack: Stack;
  github: GitHubSim;
  /** When the demo started (Unix seconds). */
  now: number;
  /** Pushes `files` as `author` and turns ci/build green on the commit; its sha. */
  push(files: Record<string, string>, message: string, author: string, date?: Date): Promise<string>;
  /** Stopped before the stack, last registered first. */
  onStop(stop: () => Promise<void>): void;
}

/** The GitOps side once the releases are deployed. */
export interface DemoGitOps {
  /** The API server holding the Applications: RollbackPolicies, RollbackAttempts, the approval policy and the operator go there too. */
  kube: KubectlTarget;
  /** The Prometheus with argocd_app_info the operator reads uptime from. */
  prometheusUrl: string;
  /** The candidate rule of the demo's RollbackPolicies. */
  candidate: { minUptime: number; window: string };
  /** What the bad release pushes for one app. */
  broken(app: string): string;
  /** Said when the bad release is pushed. */
  brokenNote: string;
  /** The bad release is pushed no earlier than this (epoch ms): the last good one must have run a while to be judged stable. */
  badPushNotBefore?: number;
  /** Shown once a degradation is confirmed (the cluster's side of it), if there is one to show. */
  showDegraded?(app: string): Promise<void>;
  /** Shown before the RollbackAttempts at the end. */
  showEnd?(): Promise<void>;
}

export interface DemoMode {
  /** What starts, said before the stack starts. */
  intro: string;
  stackOptions(now: number): StackOptions;
  /** Said once the stack is up. */
  upNote?(stack: Stack): string;
  /** Where the GitHub simulator keeps its bare repositories (its own temp dir when undefined). */
  githubRoot(stack: Stack): string | undefined;
  /** Pushes v1..v3, gets them deployed and creates the Applications. */
  deploy(context: DemoContext): Promise<DemoGitOps>;
}

// Readiness (SPEC §11): the dependencies the operator cannot work without, each
// checked under its own deadline so that /readyz answers within a probe's timeout
// even when a dependency stops answering instead of failing (a paused etcd
// holds its TCP connection open, and a call on it neither resolves nor rejects).

export interface ReadinessCheck {
  /** The dependency, as a reader of the probe's answer knows it ("etcd"). */
  name: string;
  /** Resolves to what is wrong (without the name), or undefined when ready; a rejection is a problem too. */
  run: () => Promise<string | undefined> | string | undefined;
}

export interface ReadinessOptions {
  /** How long one check may take before it counts as "no answer". */
  timeoutMs?: number;
}

export const DEFAULT_CHECK_TIMEOUT_MS = 1000;

/**
 * Runs every check in parallel, each bounded by `timeoutMs`, and returns the
 * problems ("etcd: no answer within 1000 ms"), empty when ready. The answer comes
 * within about one timeout whatever the checks do.
 */
export function readinessProbe(checks: readonly ReadinessCheck[], options: ReadinessOptions = {}): () => Promise<string[]> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  // A check still running from an earlier probe is joined, not started again: a
  // probe every few seconds against a hung dependency would otherwise pile up one
  // call per probe, all of them landing on the dependency when it comes back.
  const running = new Map<string, Promise<string | undefined>>();
  const start = (check: ReadinessCheck): Promise<string | undefined> => {
    const known = running.get(check.name);
    if (known) return known;
    const run = Promise.resolve()
      .then(() => check.run())
      .then(
        (problem) => problem,
        (error: unknown) => (error instanceof Error ? error.message : String(error)),
      )
      .finally(() => running.delete(check.name));
    running.set(check.name, run);
    return run;
  };
  return async () => {
    const answers = await Promise.all(checks.map((check) => within(start(check), timeoutMs, `no answer within ${timeoutMs} ms`)));
    return answers.flatMap((problem, i) => (problem === undefined ? [] : [`${checks[i]!.name}: ${problem}`]));
  };
}

function within<T>(work: Promise<T>, ms: number, late: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(late), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

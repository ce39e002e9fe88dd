// Text for humans, shared by the decisions (fsm, governance) and the modules
// that write messages, evidence and PR bodies. It lives at the bottom layer so
// every one of them can import it.

const trim = (n: number) => String(Number(n.toFixed(1)));

/**
 * A duration as a reader wants it: "72 s", "14 min", "3.5 h", "2 d 4 h".
 * Each unit is used until two of the next one (a 72 s window is "72 s", not
 * "1 min"), and rounded to what a reader can use.
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return 'an unknown time';
  if (seconds < 10) return `${trim(seconds)} s`;
  if (Math.round(seconds) < 120) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 120) return `${minutes} min`;
  const hours = seconds / 3600;
  if (Number(hours.toFixed(1)) < 48) return `${trim(hours)} h`;
  const wholeHours = Math.round(hours);
  const days = Math.floor(wholeHours / 24);
  const rest = wholeHours % 24;
  return rest === 0 ? `${days} d` : `${days} d ${rest} h`;
}

// What a V8 heap snapshot (.heapsnapshot, as node:v8 writeHeapSnapshot or the inspector's
// HeapProfiler.takeHeapSnapshot writes it) holds, for bench/memory.ts: self size per
// constructor, and retained size per holder (`Owner.field`: what a property of an object keeps
// alive that nothing else does), from the dominator tree of the heap graph without its weak edges
// (Cooper, Harvey & Kennedy's iterative algorithm, as Chrome DevTools computes retained sizes).
import { readFileSync } from 'node:fs';

export interface HeapSummary {
  /** Sum of every node's self size (what V8 says is live after the snapshot's GC). */
  total: number;
  nodes: number;
  /** Per constructor (objects), or per node type in parentheses (strings, arrays, code…): count and self size. */
  byConstructor: Map<string, { count: number; self: number }>;
  /** Per `Owner.field`: how many such edges and the retained size of what they hold that is theirs alone. */
  byHolder: Map<string, { count: number; retained: number }>;
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export function summarizeHeapSnapshot(file: string): HeapSummary {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const meta = raw.snapshot.meta;
  const NF = meta.node_fields.length;
  const EF = meta.edge_fields.length;
  const nType = meta.node_fields.indexOf('type');
  const nName = meta.node_fields.indexOf('name');
  const nSelf = meta.node_fields.indexOf('self_size');
  const nEdges = meta.node_fields.indexOf('edge_count');
  const eType = meta.edge_fields.indexOf('type');
  const eName = meta.edge_fields.indexOf('name_or_index');
  const eTo = meta.edge_fields.indexOf('to_node');
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const WEAK = edgeTypes.indexOf('weak');
  const SHORTCUT = edgeTypes.indexOf('shortcut');
  const ELEMENT = edgeTypes.indexOf('element');
  const HIDDEN = edgeTypes.indexOf('hidden');
  const OBJECT = nodeTypes.indexOf('object');
  const CLOSURE = nodeTypes.indexOf('closure');
  const { nodes, edges, strings } = raw;
  const count = nodes.length / NF;

  const firstEdge = new Uint32Array(count + 1);
  for (let i = 0, e = 0; i < count; i++) {
    firstEdge[i] = e;
    e += nodes[i * NF + nEdges]! * EF;
    firstEdge[i + 1] = e;
  }
  const followed = (e: number) => edges[e + eType] !== WEAK && edges[e + eType] !== SHORTCUT;

  // Postorder from the root (node 0), iteratively.
  const order = new Int32Array(count).fill(-1); // postorder index of a node
  const byOrder = new Uint32Array(count); // node at a postorder index
  const visited = new Uint8Array(count);
  const stackNode = new Uint32Array(count);
  const stackEdge = new Uint32Array(count);
  let top = 0;
  let post = 0;
  stackNode[0] = 0;
  stackEdge[0] = firstEdge[0]!;
  visited[0] = 1;
  while (top >= 0) {
    const node = stackNode[top]!;
    const e = stackEdge[top]!;
    if (e < firstEdge[node + 1]!) {
      stackEdge[top] = e + EF;
      if (!followed(e)) continue;
      const to = edges[e + eTo]! / NF;
      if (visited[to]) continue;
      visited[to] = 1;
      top++;
      stackNode[top] = to;
      stackEdge[top] = firstEdge[to]!;
    } else {
      order[node] = post;
      byOrder[post++] = node;
      top--;
    }
  }
  const reachable = post;

  // Predecessors, by postorder index.
  const predCount = new Uint32Array(reachable + 1);
  for (let n = 0; n < count; n++) {
    if (order[n]! < 0) continue;
    for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e += EF) if (followed(e) && order[edges[e + eTo]! / NF]! >= 0) predCount[order[edges[e + eTo]! / NF]!]!++;
  }
  const predStart = new Uint32Array(reachable + 1);
  for (let i = 0; i < reachable; i++) predStart[i + 1] = predStart[i]! + predCount[i]!;
  const preds = new Uint32Array(predStart[reachable]!);
  const fill = predStart.slice(0, reachable);
  for (let n = 0; n < count; n++) {
    if (order[n]! < 0) continue;
    for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e += EF) {
      const to = edges[e + eTo]! / NF;
      if (followed(e) && order[to]! >= 0) preds[fill[order[to]!]!++] = order[n]!;
    }
  }

  // Immediate dominators (postorder indices); the root is the last.
  const root = reachable - 1;
  const idom = new Int32Array(reachable).fill(-1);
  idom[root] = root;
  const intersect = (a: number, b: number) => {
    while (a !== b) {
      while (a < b) a = idom[a]!;
      while (b < a) b = idom[b]!;
    }
    return a;
  };
  for (let changed = true; changed;) {
    changed = false;
    for (let v = root - 1; v >= 0; v--) {
      let candidate = -1;
      for (let p = predStart[v]!; p < predStart[v + 1]!; p++) {
        const u = preds[p]!;
        if (idom[u] === -1) continue;
        candidate = candidate === -1 ? u : intersect(u, candidate);
      }
      if (candidate !== -1 && idom[v] !== candidate) {
        idom[v] = candidate;
        changed = true;
      }
    }
  }

  const retained = new Float64Array(reachable);
  for (let v = 0; v < reachable; v++) retained[v] = nodes[byOrder[v]! * NF + nSelf]!;
  for (let v = 0; v < root; v++) if (idom[v]! >= 0 && idom[v] !== v) retained[idom[v]!] = retained[idom[v]!]! + retained[v]!;

  const label = (n: number) => {
    const type = nodes[n * NF + nType]!;
    return type === OBJECT || type === CLOSURE ? strings[nodes[n * NF + nName]!]! : `(${nodeTypes[type]})`;
  };
  const byConstructor = new Map<string, { count: number; self: number }>();
  let total = 0;
  for (let v = 0; v < reachable; v++) {
    const n = byOrder[v]!;
    const self = nodes[n * NF + nSelf]!;
    total += self;
    const key = label(n);
    const entry = byConstructor.get(key) ?? { count: 0, self: 0 };
    entry.count++;
    entry.self += self;
    byConstructor.set(key, entry);
  }
  // What each named property holds alone: edges whose target the owner dominates.
  const byHolder = new Map<string, { count: number; retained: number }>();
  for (let v = 0; v < reachable; v++) {
    const n = byOrder[v]!;
    const type = nodes[n * NF + nType]!;
    if (type !== OBJECT && type !== CLOSURE) continue;
    for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e += EF) {
      const kind = edges[e + eType]!;
      if (!followed(e) || kind === ELEMENT || kind === HIDDEN) continue;
      const to = edges[e + eTo]! / NF;
      const w = order[to]!;
      if (w < 0 || idom[w] !== v) continue;
      const key = `${label(n)}.${strings[edges[e + eName]!]}`;
      const entry = byHolder.get(key) ?? { count: 0, retained: 0 };
      entry.count++;
      entry.retained += retained[w]!;
      byHolder.set(key, entry);
    }
  }
  return { total, nodes: reachable, byConstructor, byHolder };
}

/** The rows that grew most from `before` to `after`, largest first. */
export function growth<T extends { count: number }>(before: Map<string, T>, after: Map<string, T>, size: (t: T) => number, limit: number): Array<{ key: string; count: number; bytes: number }> {
  const rows: Array<{ key: string; count: number; bytes: number }> = [];
  for (const [key, a] of after) {
    const b = before.get(key);
    rows.push({ key, count: a.count - (b?.count ?? 0), bytes: size(a) - (b ? size(b) : 0) });
  }
  return rows.sort((x, y) => y.bytes - x.bytes).slice(0, limit);
}

/** The largest rows, largest first. */
export function largest<T extends { count: number }>(map: Map<string, T>, size: (t: T) => number, limit: number): Array<{ key: string; count: number; bytes: number }> {
  return [...map].map(([key, t]) => ({ key, count: t.count, bytes: size(t) })).sort((x, y) => y.bytes - x.bytes).slice(0, limit);
}

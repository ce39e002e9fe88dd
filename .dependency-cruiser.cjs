// The import layers of src/ (issue 11), checked by `make lint-layers`, part of
// `make test`. Lowest to highest; a module imports only its own layer or lower
// ones, type-only imports included:
//   1 api (wire names, CRD types)  2 domain (pure)  3 ports  4 decisions over ports
//   5 edges (clients)  6 wiring (reconcilers, operator)  7 entry points (main, cli).
// Tests (*.test.ts) may import anything; test/, dev/ and bench/ are not layered,
// only read where src imports them. Cycles are refused everywhere in src.

const TEST = '\\.test\\.ts$';

const API = '^src/api/';
// A folder is a layer, whole: no file of one folder sits in another layer.
// fsm/: the record, the table, the event payloads and CloudEvent types, formatting, the persistence rule, fixtures.
const DOMAIN = '^src/(fsm|governance|policy)/';
const PORTS = '^src/ports/';
// decide/: the state machine and what is said about its decisions; modules/: what it asks for (a candidate, a PR).
const DECISIONS = '^src/(modules|decide)/';
// bus/: NATS JetStream (the event bus); integrations/kube-events.ts: Kubernetes Events.
const EDGES = '^src/(integrations|store|audit|observability|server|bus)/';
const WIRING = '^src/(reconcilers/|operator\\.ts$)';
const ENTRY = '^src/(main|cli)\\.ts$';
const CONFIG = '^src/config\\.ts$';

// What talks to the world: Kubernetes, GitHub, NATS, etcd, Elasticsearch, Prometheus, OTLP
// metrics, and Node's network, process and file APIs.
// (Matched against what an import resolves to: a file under node_modules, or a core module.)
const CLIENT_LIBRARIES = [
  'node_modules/(@kubernetes/client-node|@octokit/|nats/|@nats-io/|etcd3/|@elastic/|prom-client/|@opentelemetry/)',
  '^(node:)?(http|https|http2|net|tls|dgram|dns|child_process|cluster|worker_threads|fs|fs/promises)$',
];

/** A rule refusing imports from `layer` of anything in `above` (tests exempt). */
const upward = (name, layer, above, why) => ({
  name, severity: 'error', comment: why,
  from: { path: layer, pathNot: TEST },
  to: { path: above },
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular', severity: 'error',
      comment: 'An import cycle: the layers are a ladder, each module sees only what is below it.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    upward('api-imports-nothing', API, '^src/(?!api/)',
      'src/api/ holds wire names and CRD types only: it imports nothing else from src.'),
    upward('domain-above', DOMAIN, [PORTS, DECISIONS, EDGES, WIRING, ENTRY, CONFIG].join('|'),
      'fsm/, governance/ and policy/ are the pure domain: they import only src/api/ and each other (governance/ states the rules the machine in decide/ applies).'),
    upward('ports-only-domain', PORTS, [DECISIONS, EDGES, WIRING, ENTRY, CONFIG].join('|'),
      'ports/ are typed interfaces: they import only src/api/, domain types and other ports.'),
    {
      name: 'ports-domain-types-only', severity: 'error',
      comment: 'ports/ use the domain for its types: a value import would put behaviour behind an interface.',
      from: { path: PORTS, pathNot: TEST },
      to: { path: DOMAIN, dependencyTypesNot: ['type-only'] },
    },
    upward('decisions-above', DECISIONS, [EDGES, WIRING, ENTRY, CONFIG].join('|'),
      'modules/ and decide/ decide over ports: never integrations, store, bus, observability, reconcilers or config.'),
    upward('modules-not-machine', '^src/modules/', '^src/decide/',
      'modules/ answer the state machine (a candidate, a PR); what they share with it is a domain type in fsm/record.ts.'),
    upward('edges-above', EDGES, [WIRING, ENTRY, CONFIG].join('|'),
      'integrations, store, bus, audit, observability and server are edges: they may not import reconcilers, the operator, entry points or config.'),
    upward('wiring-above', WIRING, [ENTRY, CONFIG].join('|'),
      'reconcilers/ and operator.ts are wired by the entry points: they get configuration passed in, not config.ts.'),
    {
      name: 'config-only-from-entry-points', severity: 'error',
      comment: 'Only src/main.ts and src/cli.ts read the configuration; everything else receives values.',
      from: { pathNot: [ENTRY, TEST, '^(test|dev|bench)/'] },
      to: { path: CONFIG },
    },
    {
      name: 'pure-layers-no-client-library', severity: 'error',
      comment: 'api, domain, ports and decisions (layers 1-4) are pure: no client library, no network, file or process API.',
      from: { path: [API, DOMAIN, PORTS, DECISIONS].join('|'), pathNot: TEST },
      to: { dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown', 'core'], path: CLIENT_LIBRARIES },
    },
    {
      name: 'wiring-no-client-library', severity: 'error',
      comment: 'reconcilers/ and operator.ts wire ports together: a client library belongs in an integration behind a port.',
      from: { path: WIRING, pathNot: TEST },
      to: { dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown', 'core'], path: CLIENT_LIBRARIES },
    },
    {
      name: 'every-module-in-a-layer', severity: 'error',
      comment: 'A new file or folder of src/ has no layer yet: give it one in .dependency-cruiser.cjs, so the rules above apply to it.',
      from: { path: '^src/', pathNot: [API, DOMAIN, PORTS, DECISIONS, EDGES, WIRING, ENTRY, CONFIG, TEST] },
      to: {},
    },
    {
      name: 'src-not-test-code', severity: 'error',
      comment: 'Shipped code does not import test/, dev/ or bench/.',
      from: { path: '^src/', pathNot: TEST },
      to: { path: '^(test|dev|bench)/' },
    },
    {
      name: 'not-to-unresolvable', severity: 'error',
      comment: 'An import that resolves to nothing.',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // Only src is layered; what it imports from test/, dev/ and bench/ is seen, not followed.
    doNotFollow: { path: ['node_modules', '^(test|dev|bench)/'] },
    // `import type` counts: a type is a dependency on the module that declares it.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
    reporterOptions: { err: {} },
  },
};

// The watch keeps APPLICATION_FIELDS of each Application (issue 23 §2): a field dropped that a
// decision reads would be a safety defect, so this shows, for realistic, malformed and generated
// Applications, that (1) every field the watcher's readers touch — watchedReading: applicationView,
// shapeProblems, the sync status, and the watch's own namespace, name and resourceVersion — is kept,
// recorded by a Proxy as they read (a field read but absent is recorded too), and (2) what they
// read of the kept object is what they read of the whole one.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MANIFEST_GENERATE_PATHS } from '../modules/source-set.ts';
import { APPLICATION_FIELDS, projectApplication, SharedStrings, shareStrings, watchedReading, type ApplicationObject } from './argocd.ts';
import { LAST_APPLIED_ANNOTATION, stripUnread } from './kube/custom-objects.ts';
import { fieldsAt } from './kube/fields.ts';
import { onlyWhatTheWatchReads } from './kube/watch.ts';

type Path = Array<string | number>;

/** Runs `read` on a Proxy of `object` and returns every path it read (`whole`: it listed the keys of an object). */
function recordReads(object: unknown, read: (object: ApplicationObject) => void): Array<{ path: Path; whole?: true }> {
  const reads: Array<{ path: Path; whole?: true }> = [];
  let recording = true;
  const wrap = (value: unknown, path: Path): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    const list = Array.isArray(value);
    const segment = (key: string): string | number => (list && /^\d+$/.test(key) ? Number(key) : key);
    // A list's length, and what an object or a list inherits (map, flatMap, toString), are not fields.
    const field = (key: string | symbol): key is string => typeof key === 'string' && !(list && key === 'length')
      && !(!Object.hasOwn(value, key) && key in (Object.getPrototypeOf(value) ?? {}));
    return new Proxy(value as object, {
      get(target, key, receiver) {
        if (recording && field(key)) reads.push({ path: [...path, segment(key)] });
        const child = Reflect.get(target, key, receiver) as unknown;
        return typeof key === 'string' ? wrap(child, [...path, segment(key)]) : child;
      },
      has(target, key) {
        if (recording && field(key)) reads.push({ path: [...path, segment(key)] });
        return Reflect.has(target, key);
      },
      getOwnPropertyDescriptor(target, key) {
        if (recording && field(key)) reads.push({ path: [...path, segment(key)] });
        return Reflect.getOwnPropertyDescriptor(target, key);
      },
      // Listing a list's indices reads no field of its elements; listing an object's keys reads all of them.
      ownKeys(target) {
        if (recording && !list) reads.push({ path, whole: true });
        return Reflect.ownKeys(target);
      },
    });
  };
  read(wrap(object, []) as ApplicationObject);
  recording = false;
  return reads;
}

/** What the watch and the watcher read of an Application it is told of (argocd.ts upsert and remove, kube/watch.ts). */
function readAsTheWatchDoes(object: ApplicationObject): void {
  watchedReading(object);
  void object.metadata?.namespace;
  void object.metadata?.name;
  void object.metadata?.resourceVersion;
}

/** The paths read that APPLICATION_FIELDS does not keep (a listed object must be kept whole). */
function dropped(object: unknown): string[] {
  return recordReads(object, readAsTheWatchDoes)
    .filter(({ path, whole }) => {
      const kept = fieldsAt(APPLICATION_FIELDS, path, { object });
      return whole ? kept !== true : kept === undefined;
    })
    .map(({ path, whole }) => `${path.join('.')}${whole ? ' (all keys)' : ''}`);
}

/** Both checks on one Application, as it comes from the API server (its unread metadata stripped first, as custom-objects.ts does). */
function expectKept(object: ApplicationObject): void {
  expect(dropped(object)).toEqual([]);
  const kept = projectApplication(stripUnread(object));
  expect(watchedReading(kept)).toEqual(watchedReading(object));
  // And the view the watcher keeps, its repeated strings shared, is that view.
  expect(shareStrings(watchedReading(kept).view, new SharedStrings())).toStrictEqual(watchedReading(object).view);
  // The watch's cache keeps its namespace, name and version, and a deletion's ref is read from that.
  expect(onlyWhatTheWatchReads(kept).metadata).toEqual({ namespace: object.metadata?.namespace, name: object.metadata?.name, resourceVersion: object.metadata?.resourceVersion });
  expect(watchedReading(onlyWhatTheWatchReads(kept)).view.ref).toEqual(watchedReading(object).view.ref);
}

const REPO = 'https://github.com/acme/gitops.git';
const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const SOURCE = { repoURL: REPO, path: 'apps/cart', targetRevision: 'main' };

/** What a real Argo CD 3.x controller and `kubectl apply` leave on an Application. */
function realistic(): ApplicationObject {
  const applied = { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: 'cart', namespace: 'argocd' }, spec: { project: 'default', source: SOURCE, destination: { server: 'https://kubernetes.default.svc', namespace: 'cart' } } };
  const resources = [
    { group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'cart', name: 'cart', status: 'Synced', health: { status: 'Degraded', message: 'Deployment "cart" exceeded its progress deadline' } },
    { version: 'v1', kind: 'Service', namespace: 'cart', name: 'cart', status: 'Synced', health: { status: 'Healthy' } },
    { version: 'v1', kind: 'ConfigMap', namespace: 'cart', name: 'cart-config', status: 'OutOfSync', requiresPruning: true },
  ];
  return {
    apiVersion: 'argoproj.io/v1alpha1', kind: 'Application',
    metadata: {
      name: 'cart', namespace: 'argocd', uid: '6f1b5c1e-6c2c-4b8e-9d4e-0a1b2c3d4e5f', resourceVersion: '48213', generation: 7, creationTimestamp: '2026-02-01T10:00:00Z' as unknown as Date,
      labels: { 'ai-operator.enabled': 'true', environment: 'staging' },
      annotations: { [LAST_APPLIED_ANNOTATION]: JSON.stringify(applied), [MANIFEST_GENERATE_PATHS]: '.;../shared', 'notified.notifications.argoproj.io': '{}' },
      finalizers: ['resources-finalizer.argocd.argoproj.io'],
      managedFields: [
        { manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'argoproj.io/v1alpha1', time: '2026-02-01T10:00:00Z' as unknown as Date, fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:annotations': { '.': {}, 'f:kubectl.kubernetes.io/last-applied-configuration': {} } }, 'f:spec': { '.': {}, 'f:destination': {}, 'f:project': {}, 'f:source': {} } } },
        { manager: 'argocd-application-controller', operation: 'Update', apiVersion: 'argoproj.io/v1alpha1', time: '2026-02-27T10:00:00Z' as unknown as Date, fieldsType: 'FieldsV1', fieldsV1: { 'f:status': { '.': {}, 'f:health': {}, 'f:history': {}, 'f:operationState': {}, 'f:resources': {}, 'f:sync': {} } } },
      ],
    },
    spec: { ...applied.spec, syncPolicy: { automated: { prune: true, selfHeal: true }, syncOptions: ['CreateNamespace=true'] } },
    status: {
      health: { status: 'Degraded', lastTransitionTime: '2026-02-27T10:05:00Z' },
      sync: { status: 'Synced', revision: B, comparedTo: { source: SOURCE, destination: applied.spec.destination } },
      history: [
        { id: 1, revision: A, deployedAt: '2026-02-26T10:00:00Z', deployStartedAt: '2026-02-26T09:59:58Z', source: SOURCE, initiatedBy: { automated: true } },
        { id: 2, revision: B, deployedAt: '2026-02-27T10:00:00Z', deployStartedAt: '2026-02-27T09:59:58Z', source: SOURCE, initiatedBy: { username: 'alice' } },
      ],
      resources,
      reconciledAt: '2026-02-27T10:06:00Z', sourceType: 'Directory', controllerNamespace: 'argocd',
      summary: { images: ['registry.example/cart:v2'], externalURLs: ['https://cart.example.com'] },
      conditions: [{ type: 'SyncError', message: 'one or more objects failed to apply', lastTransitionTime: '2026-02-27T10:01:00Z' }],
      operationState: {
        operation: { sync: { revision: B, syncStrategy: { hook: {} } }, initiatedBy: { automated: true }, retry: { limit: 5 } },
        phase: 'Succeeded', message: 'successfully synced (all tasks run)', startedAt: '2026-02-27T09:59:58Z', finishedAt: '2026-02-27T10:00:00Z',
        syncResult: { revision: B, source: SOURCE, resources: resources.map((r) => ({ ...r, message: 'configured', hookPhase: 'Running', syncPhase: 'Sync' })) },
      },
    },
  } as unknown as ApplicationObject;
}

const app = (spec: unknown, status: unknown, metadata: Record<string, unknown> = {}): ApplicationObject => (
  { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { namespace: 'team-a', name: 'cart', resourceVersion: '9', labels: { 'ai-operator.enabled': 'true' }, ...metadata }, spec, status } as ApplicationObject
);

const MULTI_SOURCES = [
  { repoURL: 'https://charts.example.com', chart: 'redis', targetRevision: '9.2.0', helm: { releaseName: 'r', values: 'big: inline values' } },
  { repoURL: REPO, path: 'charts/shop', targetRevision: 'main', helm: { valueFiles: ['$values/envs/staging/values.yaml'], fileParameters: [{ name: 'config', path: 'files/config.json' }], parameters: [{ name: 'x', value: '1' }] } },
  { repoURL: REPO, targetRevision: 'main', ref: 'values' },
  { repoURL: REPO, path: 'overlays/staging', kustomize: { components: ['../../components/tls'], images: ['x:1'] } },
  { repoURL: REPO, path: 'raw', directory: { recurse: true, include: '*.yaml', exclude: 'test/*', disableExtensionFilter: false, jsonnet: { tlas: [] } } },
  { repoURL: REPO, path: 'cmp', plugin: { name: 'envsubst', env: [{ name: 'A', value: 'b' }] } },
];

const FIXTURES: Array<[string, ApplicationObject]> = [
  ['a realistic Application written by Argo CD and kubectl apply', realistic()],
  ['a multi-source Application with charts, value files, components, a directory and a plugin', app(
    { sources: MULTI_SOURCES, destination: { namespace: 'shop' } },
    { health: { status: 'Progressing' }, sync: { status: 'OutOfSync', revisions: ['9.1.0', A, A, A, A, A] },
      history: [{ id: 4, revisions: ['9.1.0', A, A, A, A, A], deployedAt: '2026-01-03T00:00:00Z', sources: MULTI_SOURCES.map((s) => ({ ...s, targetRevision: '9.1.0' })) }] },
  )],
  ['a source hydrator', app({ sourceHydrator: { drySource: SOURCE, syncSource: { targetBranch: 'env/prod', path: 'apps/a' } } }, { health: { status: 'Healthy' } })],
  ['a Helm repository chart', app({ source: { repoURL: 'https://charts.example.com', chart: 'redis', targetRevision: '9.2.0' } }, { health: { status: 'Healthy' }, sync: { revision: '9.2.0' } })],
  ['no status yet', app({ source: SOURCE }, undefined)],
  ['a status that is not an object', app({ source: SOURCE }, 'broken')],
  ['health of the wrong types', app({ source: SOURCE }, { health: { status: { code: 'Degraded' } }, sync: { revision: 42 } })],
  ['history and resources that are not lists', app({ source: SOURCE }, { health: { status: 'Degraded' }, history: { id: 1, revision: A }, resources: 'api' })],
  ['entries of the wrong types', app({ source: SOURCE }, {
    health: { status: 'Degraded' },
    history: [null, 'x', { id: '7', revision: A, deployedAt: 'yesterday' }, { id: 3, revisions: [B], deployedAt: '2026-02-25T10:00:00Z' }],
    resources: [null, { kind: 'Deployment', name: 'api' }, { group: 'apps', kind: 'Deployment', namespace: 7, name: 'api', health: 'Degraded' }],
  })],
  ['sources that are not a list, and a source without a repository', app({ sources: { repoURL: REPO }, source: { path: 'x' } }, { health: { status: 'Healthy' } })],
  ['a sources entry without a repoURL', app({ sources: [SOURCE, { path: 'y' }], destination: 'cart' }, { health: { status: 'Healthy' } }, { annotations: { [MANIFEST_GENERATE_PATHS]: 7 } })],
];

describe('shareStrings', () => {
  it('copies a view with one copy of each repeated value, and not of what one app alone has', () => {
    const strings = new SharedStrings();
    const views = ['cart', 'shop'].map((name) => watchedReading({ ...realistic(), metadata: { ...realistic().metadata, name, uid: `uid-${name}` } }).view);
    const shared = views.map((view) => shareStrings(view, strings));
    expect(shared).toStrictEqual(views);
    // Two revisions and their two dates, the repository and its branch, two label values, three kinds, a group,
    // two namespaces (the Application's, the resources'), two healths, the manifest-generate-paths annotation.
    expect(strings.size).toBe(17);
    // A value no view was built with since the relist before last is forgotten.
    strings.turn();
    shareStrings(views[0]!.history[0], strings);
    strings.turn();
    expect(strings.size).toBe(0);
    strings.get('x');
    expect(strings.size).toBe(1);
  });

  it('keeps a __proto__ key an own property', () => {
    const view = JSON.parse('{"rendered":{"source":{"plugin":{"__proto__":{"name":"x"}}}}}') as object;
    const copy = shareStrings(view, new SharedStrings()) as { rendered: { source: { plugin: object } } };
    expect(copy).toStrictEqual(view);
    expect(Object.getPrototypeOf(copy.rendered.source.plugin)).toBe(Object.prototype);
  });
});

describe('APPLICATION_FIELDS', () => {
  it.each(FIXTURES)('keeps every field the readers read of %s, and they read the same of it', (_name, object) => {
    expectKept(object);
  });

  it('drops what a real Application carries that no reader reads', () => {
    const kept = projectApplication(stripUnread(realistic())) as Record<string, any>;
    expect(kept.metadata.managedFields).toBeUndefined();
    expect(kept.metadata.annotations).toEqual({ [MANIFEST_GENERATE_PATHS]: '.;../shared' });
    expect(kept.status.operationState).toBeUndefined();
    expect(kept.status.history[0]).toEqual({ id: 1, revision: A, deployedAt: '2026-02-26T10:00:00Z' });
    expect(JSON.stringify(kept).length).toBeLessThan(JSON.stringify(realistic()).length / 3);
  });

  it('fails on a reader of a field it drops (the check can fail)', () => {
    const reads = recordReads(realistic(), (object) => void (object.status as { operationState?: { phase?: string } }).operationState?.phase);
    expect(reads.filter(({ path }) => fieldsAt(APPLICATION_FIELDS, path) === undefined).map(({ path }) => path.join('.'))).toEqual(['status.operationState', 'status.operationState.phase']);
    // A field read but absent is recorded all the same.
    expect(recordReads({}, (object) => void object.status?.sync).map(({ path }) => path.join('.'))).toEqual(['status']);
  });

  it('keeps every field the readers read of generated Applications, of the right types and of the wrong ones', () => {
    const junk = fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.constant(null), fc.boolean(), fc.array(fc.string({ maxLength: 3 }), { maxLength: 2 }), fc.dictionary(fc.string({ maxLength: 3 }), fc.string({ maxLength: 3 }), { maxKeys: 2, noNullPrototype: true }));
    const text = (...values: string[]) => fc.oneof(fc.constantFrom(...values, ''), junk);
    const date = fc.oneof(fc.constantFrom('2026-02-26T10:00:00Z', '2026-02-27T10:00:00.5+01:00', 'Feb 26 2026'), junk);
    const sha = text(A, B, '9.1.0');
    const extra = fc.dictionary(fc.constantFrom('x', 'message', 'version', 'status', 'syncWave', 'initiatedBy'), junk, { maxKeys: 2, noNullPrototype: true });
    const source = fc.oneof(fc.record({
      repoURL: text(REPO, 'https://charts.example.com'), path: text('apps/a', '.', ''), chart: text('redis'), targetRevision: text('main', 'HEAD', '9.1.0'), ref: text('values'),
      helm: fc.oneof(fc.record({ valueFiles: fc.oneof(fc.array(text('values.yaml'), { maxLength: 2 }), junk), fileParameters: fc.oneof(fc.array(fc.oneof(fc.record({ name: text('n'), path: text('p') }, { noNullPrototype: true }), junk), { maxLength: 2 }), junk), values: text('a: 1') }, { requiredKeys: [], noNullPrototype: true }), junk),
      kustomize: fc.oneof(fc.record({ components: fc.oneof(fc.array(text('c'), { maxLength: 2 }), junk), images: junk }, { requiredKeys: [], noNullPrototype: true }), junk),
      directory: fc.oneof(fc.record({ recurse: fc.oneof(fc.boolean(), junk), include: text('*.yaml'), exclude: text('x'), disableExtensionFilter: fc.oneof(fc.boolean(), junk), jsonnet: junk }, { requiredKeys: [], noNullPrototype: true }), junk),
      plugin: junk,
    }, { requiredKeys: [], noNullPrototype: true }), junk);
    const sources = fc.oneof(fc.array(source, { maxLength: 3 }), junk);
    const history = fc.oneof(fc.array(fc.oneof(fc.record({ id: fc.oneof(fc.nat(9), junk), revision: sha, revisions: fc.oneof(fc.array(sha, { maxLength: 3 }), junk), deployedAt: date, deployStartedAt: date, source, sources }, { requiredKeys: [], noNullPrototype: true }), junk), { maxLength: 3 }), junk);
    const resources = fc.oneof(fc.array(fc.oneof(fc.record({ group: text('apps', ''), version: text('v1'), kind: text('Deployment', 'StatefulSet', 'Service'), namespace: text('cart'), name: text('api'), status: text('Synced'), health: fc.oneof(fc.record({ status: text('Healthy', 'Degraded'), message: text('m') }, { requiredKeys: [], noNullPrototype: true }), junk) }, { requiredKeys: [], noNullPrototype: true }), junk), { maxLength: 3 }), junk);
    const application = fc.record({
      apiVersion: fc.constant('argoproj.io/v1alpha1'), kind: fc.constant('Application'),
      metadata: fc.record({
        namespace: fc.constantFrom('argocd', 'team-a'), name: fc.constantFrom('cart', 'shop'), uid: fc.constant('u-1'), resourceVersion: fc.constantFrom('1', '2'), generation: fc.nat(5),
        labels: fc.dictionary(fc.constantFrom('environment', 'ai-operator.enabled', 'team'), fc.constantFrom('staging', 'production', 'true'), { maxKeys: 3, noNullPrototype: true }),
        annotations: fc.oneof(fc.record({ [MANIFEST_GENERATE_PATHS]: text('.;../shared'), [LAST_APPLIED_ANNOTATION]: text('{}'), other: text('x') }, { requiredKeys: [], noNullPrototype: true }), junk),
        managedFields: fc.array(fc.record({ manager: fc.string({ maxLength: 5 }), fieldsV1: fc.dictionary(fc.string({ maxLength: 4 }), junk, { maxKeys: 3, noNullPrototype: true }) }, { noNullPrototype: true }), { maxLength: 2 }),
      }, { requiredKeys: ['namespace', 'name'], noNullPrototype: true }),
      spec: fc.oneof(fc.record({ source, sources, sourceHydrator: junk, destination: fc.oneof(fc.record({ namespace: text('cart'), server: text('https://kubernetes.default.svc'), name: text('in-cluster') }, { requiredKeys: [], noNullPrototype: true }), junk), project: text('default'), syncPolicy: junk }, { requiredKeys: [], noNullPrototype: true }), junk),
      status: fc.oneof(fc.record({
        health: fc.oneof(fc.record({ status: text('Healthy', 'Progressing', 'Degraded', 'Suspended', 'Missing', 'Unknown', 'degraded'), message: text('m'), lastTransitionTime: date }, { requiredKeys: [], noNullPrototype: true }), junk),
        sync: fc.oneof(fc.record({ status: text('Synced', 'OutOfSync'), revision: sha, revisions: fc.oneof(fc.array(sha, { maxLength: 3 }), junk), comparedTo: junk }, { requiredKeys: [], noNullPrototype: true }), junk),
        history, resources, operationState: junk, conditions: junk, summary: junk, reconciledAt: date, sourceType: text('Helm'),
      }, { requiredKeys: [], noNullPrototype: true }), junk),
    }, { requiredKeys: ['metadata'], noNullPrototype: true });
    // Objects as JSON.parse makes them (never of a null prototype).
    fc.assert(fc.property(fc.tuple(application, extra), ([object, more]) => {
      expectKept({ ...more, ...object } as ApplicationObject);
    }), { numRuns: 500 });
  });
});

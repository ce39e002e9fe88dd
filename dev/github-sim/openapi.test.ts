import { describe, expect, it } from 'vitest';
import { adaptSchema, githubOpenApi } from './openapi.ts';
import { Router } from './router.ts';
import { ALL_ROUTES } from './index.ts';

describe('adaptSchema (OpenAPI 3.0 → JSON Schema)', () => {
  it('turns nullable into "null or the schema", oneOf into anyOf, and roots component refs', () => {
    expect(adaptSchema({ nullable: true, oneOf: [{ $ref: '#/components/schemas/a' }], discriminator: { propertyName: 'x' }, example: { nullable: true } })).toEqual({
      anyOf: [{ type: 'null' }, { anyOf: [{ $ref: 'https://api.github.com/openapi.json#/components/schemas/a' }], example: { nullable: true } }],
    });
  });
});

describe('GitHub OpenAPI validator', () => {
  const v = githubOpenApi();
  it('knows every operation the simulator serves', () => {
    for (const r of ALL_ROUTES) expect(v.hasOperation(r.method, r.template), `${r.method} ${r.template}`).toBe(true);
  });
  it('rejects a body that lacks required fields, and accepts GitHub errors and 304s', () => {
    expect(v.check({ method: 'GET', template: '/repos/{owner}/{repo}/git/ref/{ref}', status: 200, body: { ref: 'refs/heads/main' } })[0]).toMatch(/required property/);
    expect(v.check({ method: 'GET', template: '/repos/{owner}/{repo}/git/ref/{ref}', status: 502, body: { message: 'Server Error' } })).toEqual([]);
    expect(v.check({ method: 'GET', template: '/repos/{owner}/{repo}/git/ref/{ref}', status: 304, body: undefined })).toEqual([]);
    expect(v.check({ method: 'GET', template: '/repos/{owner}/{repo}/git/ref/{ref}', status: 201, body: {} })[0]).toMatch(/documents no 201/);
    expect(v.check({ method: 'GET', template: '/nope', status: 200, body: {} })[0]).toMatch(/no such operation/);
  });
});

describe('Router', () => {
  const router = new Router(ALL_ROUTES);
  it('matches templates, decoding parameters; a trailing ref may hold raw slashes', () => {
    expect(router.match('GET', '/repos/acme/gitops/git/ref/heads%2Ffeature%2Fx')?.params).toEqual({ owner: 'acme', repo: 'gitops', ref: 'heads/feature/x' });
    expect(router.match('GET', '/repos/acme/gitops/git/ref/heads/feature/x')?.params.ref).toBe('heads/feature/x');
    expect(router.match('GET', '/repos/acme/gitops/commits/abc/status')?.route.template).toBe('/repos/{owner}/{repo}/commits/{ref}/status');
    expect(router.match('DELETE', '/repos/acme/gitops')).toBeUndefined();
    // A repository's name never holds a slash: a branch with one is still the branch route, an unknown route no repository.
    expect(router.match('GET', '/repos/acme/gitops')?.route.template).toBe('/repos/{owner}/{repo}');
    expect(router.match('GET', '/repos/acme/gitops/branches/feature/x')?.params).toEqual({ owner: 'acme', repo: 'gitops', branch: 'feature/x' });
    expect(router.match('GET', '/repos/acme/gitops/no-such-route')).toBeUndefined();
  });
});

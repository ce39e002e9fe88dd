// Who is calling: GET /user for a token, and the GitHub App endpoints a JWT may
// call (the app itself, finding its installation, minting installation tokens).
import { ApiError, notFound } from '../api-error.ts';
import type { Route } from '../router.ts';

export const identityRoutes: Route[] = [
  {
    method: 'GET', template: '/user', auth: 'token',
    async handle(ctx) {
      // Installation tokens are not users; GitHub refuses them here.
      if (ctx.principal.kind !== 'user') throw new ApiError(403, 'Resource not accessible by integration');
      return { status: 200, body: ctx.views.privateUser(ctx.world.account(ctx.principal.login)) };
    },
  },
  {
    method: 'GET', template: '/app', auth: 'app',
    async handle(ctx) {
      const app = ctx.principal.kind === 'app' ? ctx.world.apps.get(ctx.principal.appId) : undefined;
      if (!app) throw notFound();
      return { status: 200, body: ctx.views.integration(app) };
    },
  },
  {
    method: 'GET', template: '/users/{username}/installation', auth: 'app',
    async handle(ctx) {
      const appId = ctx.principal.kind === 'app' ? ctx.principal.appId : undefined;
      const installation = [...ctx.world.installations.values()].find((i) => i.appId === appId && i.account.toLowerCase() === ctx.params.username!.toLowerCase());
      if (!installation) throw notFound();
      return { status: 200, body: ctx.views.installation(installation) };
    },
  },
  {
    method: 'POST', template: '/app/installations/{installation_id}/access_tokens', auth: 'app',
    async handle(ctx) {
      const installation = ctx.world.installations.get(Number(ctx.params.installation_id));
      if (!installation || ctx.principal.kind !== 'app' || installation.appId !== ctx.principal.appId) throw notFound();
      const { token, expiresAt } = ctx.world.installationToken(installation.id);
      return {
        status: 201,
        body: { token, expires_at: expiresAt, permissions: ctx.views.installation(installation).permissions, repository_selection: 'all' },
      };
    },
  },
];

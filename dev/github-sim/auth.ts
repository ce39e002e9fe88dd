// Credentials as GitHub checks them: a token ("token X" or "Bearer X") names a
// user or an app installation; a GitHub App's JWT (RS256, signed with the app's
// private key, `iss` = app id, at most 10 minutes long) names the app itself.
import { verify } from 'node:crypto';
import { ApiError } from './api-error.ts';
import type { AuthKind } from './router.ts';
import type { Principal, World } from './world.ts';

const badCredentials = () => new ApiError(401, 'Bad credentials');

function decodeJwt(world: World, jwt: string): Principal {
  const [header, payload, signature] = jwt.split('.');
  let claims: { iss?: unknown; exp?: unknown; iat?: unknown };
  let alg: unknown;
  try {
    alg = (JSON.parse(Buffer.from(header!, 'base64url').toString('utf8')) as { alg?: unknown }).alg;
    claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as typeof claims;
  } catch (error) {
    throw new ApiError(401, `A JSON web token could not be decoded (${error instanceof Error ? error.message : String(error)})`);
  }
  const app = world.apps.get(Number(claims.iss));
  if (alg !== 'RS256' || !app) throw new ApiError(401, 'A JSON web token could not be decoded');
  const signed = verify('RSA-SHA256', Buffer.from(`${header}.${payload}`), app.publicKey, Buffer.from(signature!, 'base64url'));
  if (!signed) throw new ApiError(401, 'A JSON web token could not be decoded');
  const now = Date.now() / 1000;
  if (typeof claims.exp !== 'number' || claims.exp < now) throw new ApiError(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires");
  if (typeof claims.iat !== 'number' || claims.exp - claims.iat > 600 + 60) throw new ApiError(401, "'Expiration time' claim ('exp') is too far in the future");
  return { kind: 'app', appId: app.id };
}

/** Who the Authorization header says is calling, checked against what the route accepts. */
export function authenticate(world: World, header: string | undefined, accepts: AuthKind): Principal {
  const match = /^(?:token|bearer)\s+(\S+)$/i.exec(header ?? '');
  if (!match) throw new ApiError(401, 'Requires authentication');
  const credential = match[1]!;
  const principal = credential.split('.').length === 3 ? decodeJwt(world, credential) : world.tokens.get(credential);
  if (!principal) throw badCredentials();
  if (accepts === 'app' && principal.kind !== 'app') throw new ApiError(401, 'A JSON web token could not be decoded');
  if (accepts === 'token' && principal.kind === 'app') throw new ApiError(403, 'Resource not accessible by integration');
  return principal;
}

/** The login a request acts as. */
export function actorOf(world: World, principal: Principal): string {
  if (principal.kind === 'app') return `${world.apps.get(principal.appId)!.slug}[bot]`;
  return principal.login;
}

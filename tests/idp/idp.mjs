// A real OpenID Connect provider (node-oidc-provider) for Shiki's OIDC tests. The tests
// start it on a free loopback port; it is never deployed.
//
//   node idp.mjs CONFIG.json
//
// CONFIG.json:
//   {
//     "port": 0,                          // 0: any free port
//     "audience": "shiki-api",            // `aud` of the JWT access tokens
//     "resource": "https://shiki.test/api", // the resource indicator that selects them
//     "clients": [ { node-oidc-provider client metadata }, ... ],
//     "accounts": { "alice": { "groups": [...], "tenant": "acme", "email": "..." }, ... },
//     "machines": { "<client_id>": { "groups": [...], "tenant": "..." } }  // client_credentials
//   }
//
// Prints `listening <issuer>` on stdout once it accepts connections. Test-only routes:
//   POST /__test/rotate          a new signing key becomes the current one (the old one
//                                stays published); answers {"kid": new kid}
//   POST /__test/clients         [client metadata, ...]: replaces the registered clients
//   POST /__test/mint            {"claims": {...}, "header": {...}?, "forged": bool?}: a JWT
//                                signed with the current key, or with a stranger's key
//                                under the current kid when `forged`; answers {"token"}
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
let kidCounter = 0;

function newKey() {
  kidCounter += 1;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `k${kidCounter}-${crypto.randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

let keys = [newKey()];
let issuer;
let provider;

function claimsOf(accountId) {
  const account = config.accounts?.[accountId];
  if (!account) return undefined;
  return {
    sub: accountId,
    preferred_username: accountId,
    email: account.email ?? `${accountId}@example.test`,
    groups: account.groups ?? [],
    ...(account.tenant ? { tenant: account.tenant } : {}),
  };
}

function makeProvider() {
  return new Provider(issuer, {
    clients: config.clients,
    jwks: { keys },
    cookies: { keys: ['shiki-test-idp-cookie-key'] },
    pkce: { required: () => true },
    // Claims in the ID token itself (what Shiki's web login reads), not only at userinfo.
    conformIdTokenClaims: false,
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups', 'tenant', 'api'],
    claims: {
      openid: ['sub'],
      profile: ['preferred_username'],
      email: ['email'],
      groups: ['groups'],
      tenant: ['tenant'],
    },
    async findAccount(_ctx, id) {
      const claims = claimsOf(id);
      if (!claims) return undefined;
      return { accountId: id, claims: async () => claims };
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => config.resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== config.resource) throw new Provider.errors.InvalidTarget();
          return {
            scope: 'api',
            audience: config.audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    async extraTokenClaims(_ctx, token) {
      if (token.accountId) {
        const c = claimsOf(token.accountId);
        return c ? { groups: c.groups, ...(c.tenant ? { tenant: c.tenant } : {}), preferred_username: c.preferred_username } : undefined;
      }
      const machine = config.machines?.[token.clientId];
      return machine ? { groups: machine.groups ?? [], ...(machine.tenant ? { tenant: machine.tenant } : {}) } : undefined;
    },
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function b64(obj) {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}

function mint({ claims, header, forged }) {
  const current = keys[0];
  const signing = forged ? newKey() : current;
  const h = { alg: 'RS256', typ: 'JWT', kid: current.kid, ...(header ?? {}) };
  const input = `${b64(h)}.${b64(claims)}`;
  const key = crypto.createPrivateKey({ key: signing, format: 'jwk' });
  const sig = crypto.sign('sha256', Buffer.from(input), key).toString('base64url');
  return `${input}.${sig}`;
}

async function testRoute(req, res) {
  const body = await readBody(req);
  res.setHeader('Content-Type', 'application/json');
  if (req.url === '/__test/rotate') {
    keys = [newKey(), ...keys];
    provider = makeProvider();
    res.end(JSON.stringify({ kid: keys[0].kid }));
  } else if (req.url === '/__test/clients') {
    config.clients = JSON.parse(body);
    provider = makeProvider();
    res.end('{}');
  } else if (req.url === '/__test/mint') {
    res.end(JSON.stringify({ token: mint(JSON.parse(body)) }));
  } else {
    res.statusCode = 404;
    res.end('{}');
  }
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url.startsWith('/__test/')) {
    testRoute(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    });
    return;
  }
  provider.callback()(req, res);
});

server.listen(config.port ?? 0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  provider = makeProvider();
  process.stdout.write(`listening ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));

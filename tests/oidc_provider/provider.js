// A real OpenID provider for the sign-in tests: panva's oidc-provider with its development
// login and consent pages, one confidential test client, and accounts made up from whatever
// login is typed (any password): `<name>@<domain>` gets that email, verified unless the login
// starts with "unverified". Configured from the environment; prints "listening" when ready.
// Its issuer is always http://127.0.0.1:PORT; it listens there and on each address in
// ALSO_LISTEN_ON (comma-separated), e.g. the Docker bridge's, for a relay in the compose
// stack's auth container (deploy/compose/test-oidc.yml).
import Provider from 'oidc-provider';

const { PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS, ALSO_LISTEN_ON } = process.env;
const issuer = `http://127.0.0.1:${PORT}`;
const addresses = ['127.0.0.1', ...(ALSO_LISTEN_ON ? ALSO_LISTEN_ON.split(',') : [])];

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: REDIRECT_URIS.split(','),
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Email and name in the ID token, as Google and Keycloak send them (the stack reads the ID
  // token only).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['test-only-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const email = id.includes('@') ? id : `${id}@example.test`;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email, email_verified: !id.startsWith('unverified'), name: id };
      },
    };
  },
});

let listening = 0;
for (const address of addresses) {
  // Koa's listen: one HTTP server per call, all serving the one provider.
  provider.listen(Number(PORT), address, () => {
    listening += 1;
    if (listening === addresses.length) {
      console.log(`listening on ${issuer} (${addresses.join(', ')})`);
    }
  });
}

// Single sign-on in a real headless Chromium: the console's "Sign in with single sign-on"
// → node-oidc-provider's login and consent pages → back in the console as that person,
// seeing only their tenant's devices → "Sign out" → the provider's sign-out → the console's
// sign-in form. Started by tests/tests/oidc.rs; exits non-zero on the first failure.
//
// Environment: SHIKI_URL, SHIKI_USER (an account of the provider), SHIKI_EXPECT_WHO (the
// "Signed in as …" text), SHIKI_VISIBLE, SHIKI_HIDDEN (a device the user sees, one they
// do not), SHIKI_OUT (screenshots).
import { env, launch } from './harness.mjs';

const url = env('SHIKI_URL');
// Only the console's own script errors count (the provider's pages fetch web fonts this
// machine cannot reach).
const { page, shot, step, finish } = await launch(env('SHIKI_OUT'));

await step('sign in at the provider', async () => {
  await page.goto(url);
  await page.getByRole('button', { name: 'Sign in with single sign-on' }).click();
  await page.locator('input[name="login"]').fill(env('SHIKI_USER'));
  await page.locator('input[name="password"]').fill('any');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByText(env('SHIKI_EXPECT_WHO')).waitFor();
});

await step("the fleet shows the tenant's devices only", async () => {
  await page.locator('#devices tbody tr', { hasText: env('SHIKI_VISIBLE') }).waitFor();
  const hidden = await page.locator('#devices tbody tr', { hasText: env('SHIKI_HIDDEN') }).count();
  if (hidden !== 0) throw new Error(`${env('SHIKI_HIDDEN')} is listed`);
  if (await page.getByLabel('API token').isVisible()) throw new Error('the token form is still shown');
  await shot('sso-fleet');
});

await step('sign out here and at the provider', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Yes, sign me out' }).click();
  await page.waitForURL((u) => u.toString().startsWith(url));
  await page.getByLabel('API token').waitFor();
  await page.getByRole('button', { name: 'Sign in with single sign-on' }).waitFor();
  await shot('sso-signed-out');
});

await finish();

// Single sign-on in a real headless Chromium: the console's "Sign in with single sign-on"
// → node-oidc-provider's login and consent pages → back in the console as that person,
// seeing only their tenant's devices → "Sign out" → the provider's sign-out → the console's
// sign-in form. Started by tests/tests/oidc.rs; exits non-zero on the first failure.
//
// Environment: SHIKI_URL, SHIKI_USER (an account of the provider), SHIKI_EXPECT_WHO (the
// "Signed in as …" text), SHIKI_VISIBLE, SHIKI_HIDDEN (a device the user sees, one they
// do not), SHIKI_OUT (screenshots).
import fs from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env('SHIKI_URL');
const out = env('SHIKI_OUT');
fs.mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
page.setDefaultTimeout(30_000);
// Errors of the console's own scripts (the provider's pages fetch web fonts this machine
// cannot reach; those are not ours).
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));

async function shot(name) {
  await page.screenshot({ path: path.join(out, `${name}.png`), fullPage: true });
}

async function step(name, fn) {
  try {
    await fn();
    console.log(`ok: ${name}`);
  } catch (e) {
    await shot(`failed-${name.replace(/\W+/g, '-')}`).catch(() => {});
    console.error(`FAILED: ${name}: ${e.message}\nat ${page.url()}`);
    if (pageErrors.length) console.error(`page errors:\n${pageErrors.join('\n')}`);
    await browser.close();
    process.exit(1);
  }
}

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

if (pageErrors.length) {
  console.error(`page errors:\n${pageErrors.join('\n')}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log('all steps passed');

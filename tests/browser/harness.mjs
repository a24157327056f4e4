// What the browser tests share: Debian's Chromium started headless for this machine (no
// network beyond loopback), a screenshot per page, and steps that stop at the first
// failure with a screenshot of the page as it was.
import fs from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

export async function launch(out) {
  fs.mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(30_000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const shot = (name) => page.screenshot({ path: path.join(out, `${name}.png`), fullPage: true });
  const fail = async (why) => {
    console.error(why);
    if (errors.length) console.error(`page errors:\n${errors.join('\n')}`);
    await browser.close();
    process.exit(1);
  };
  const step = async (name, fn) => {
    try {
      await fn();
      console.log(`ok: ${name}`);
    } catch (e) {
      await shot(`failed-${name.replace(/\W+/g, '-')}`).catch(() => {});
      await fail(`FAILED: ${name}: ${e.message}\nat ${page.url()}`);
    }
  };
  const finish = async () => {
    if (errors.length) await fail('the page reported errors');
    await browser.close();
    console.log('all steps passed');
  };
  return { browser, page, errors, shot, step, finish };
}

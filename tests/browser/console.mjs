// The operator console in a real headless Chromium (Debian's, driven by Playwright), as an
// operator uses it: by visible labels and button texts. Started by tests/tests/console.rs
// against a running cloud with a simulated chiller; exits non-zero on the first failure,
// after a screenshot of the page as it was.
//
// Environment: SHIKI_URL, SHIKI_TOKEN, SHIKI_DEVICE, SHIKI_OUT (screenshots),
// SHIKI_EXPECT_422 (the API's message for chw_setpoint_c = 30), SHIKI_BAD_SCHEDULE (a
// schedule file the API refuses), SHIKI_SCHEDULE_PROBLEM (text one listed problem holds),
// SHIKI_GOOD_SCHEDULE (one covering today, with a holiday).
import { env, launch } from './harness.mjs';

const url = env('SHIKI_URL');
const device = env('SHIKI_DEVICE');
const { page, errors, shot, step, finish } = await launch(env('SHIKI_OUT'));
// Chromium logs every 4xx answer; the refusals this test provokes (422) are expected.
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().includes('status of 422')) errors.push(m.text());
});

function expectText(actual, expected, what) {
  if (!actual.includes(expected)) throw new Error(`${what}: expected ${JSON.stringify(expected)} in ${JSON.stringify(actual)}`);
}

await step('sign in with an API token', async () => {
  await page.goto(url);
  await page.getByLabel('API token').fill(env('SHIKI_TOKEN'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor();
});

await step('the fleet shows the device online', async () => {
  const row = page.locator('#devices tbody tr', { hasText: device });
  await row.locator('td.online', { hasText: 'online since' }).waitFor();
  // Live plant state as columns: running state and temperatures from the newest sample.
  await row.locator('td', { hasText: '°C' }).first().waitFor();
  await row.getByText(/^(running|stopped)$/).waitFor();
  expectText(await page.locator('#fleet-count').innerText(), 'of 1 devices', 'fleet count');
  await shot('fleet');
});

await step('open the device: live readings and a chart with data', async () => {
  await page.getByRole('link', { name: device }).click();
  await page.locator('#device-title', { hasText: device }).waitFor();
  await page.locator('#readings caption', { hasText: 'Sample' }).waitFor();
  await page.locator('svg.chart').waitFor();
  // A flat line (a setpoint that holds) has no height, so "visible" is not asked of it.
  const line = page.locator('svg.chart polyline[data-point]').first();
  await line.waitFor({ state: 'attached' });
  const points = (await line.getAttribute('points')).trim().split(/\s+/).filter(Boolean);
  if (points.length < 2) throw new Error(`the chart's line has ${points.length} point(s)`);
  await shot('device');
});

await step('change the setpoint through the form and see it verified', async () => {
  await page.getByLabel('chw_setpoint_c').fill('8.5');
  await page.getByRole('button', { name: 'Apply' }).click();
  const outcome = page.locator('#set-chw_setpoint_c-outcome');
  await outcome.getByText('verified', { exact: true }).waitFor({ timeout: 60_000 });
  await page.locator('#history tbody tr', { hasText: 'chw_setpoint_c' })
    .filter({ hasText: '8.5' }).filter({ hasText: 'verified' }).first().waitFor();
  await page.locator('#shadow tbody tr[data-key="chw_setpoint_c"]', { hasText: '8.5' }).waitFor();
  await shot('verified');
});

await step('an out-of-range value shows the 422 beside the field', async () => {
  await page.getByLabel('chw_setpoint_c').fill('30');
  await page.getByRole('button', { name: 'Apply' }).click();
  const outcome = page.locator('#set-chw_setpoint_c-outcome.failed');
  await outcome.waitFor();
  expectText(await outcome.innerText(), env('SHIKI_EXPECT_422'), 'the 422 beside chw_setpoint_c');
  await shot('refused');
});

await step('a broken schedule is refused with its problems listed', async () => {
  await page.getByLabel('Schedule file').setInputFiles(env('SHIKI_BAD_SCHEDULE'));
  await page.getByRole('button', { name: 'Upload schedule' }).click();
  const problems = page.locator('#schedule-problems li');
  await problems.first().waitFor();
  expectText(await page.locator('#schedule-problems').innerText(), env('SHIKI_SCHEDULE_PROBLEM'), 'schedule problems');
  await page.locator('#schedule-problems').scrollIntoViewIfNeeded();
  await shot('schedule');
});

await step('a good schedule shows what is in force and the calendar', async () => {
  await page.getByLabel('Schedule file').setInputFiles(env('SHIKI_GOOD_SCHEDULE'));
  await page.getByRole('button', { name: 'Upload schedule' }).click();
  await page.locator('#schedule-problems', { hasText: 'Schedule uploaded' }).waitFor();
  await page.locator('#schedule-now', { hasText: 'In force now' }).waitFor();
  await page.locator('#schedule-status tbody tr', { hasText: 'console-now' }).waitFor();
  const months = page.locator('#schedule-calendar table.month');
  await months.first().waitFor();
  if ((await months.count()) < 2) throw new Error('the calendar shows fewer than two months');
  await page.locator('#schedule-calendar td.holiday').first().waitFor();
  await page.locator('#schedule-calendar td.today').waitFor();
  await page.locator('#schedule-calendar').scrollIntoViewIfNeeded();
  await shot('calendar');
});

await step('a tablet-sized window still shows the device', async () => {
  await page.setViewportSize({ width: 768, height: 1024 });
  await page.locator('#device-title', { hasText: device }).waitFor();
  await shot('tablet');
});

await step('the update jobs page lists jobs and offers the form', async () => {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByRole('link', { name: 'Update jobs' }).click();
  await page.getByRole('heading', { name: 'Update jobs' }).waitFor();
  await page.locator('#jobs tbody tr', { hasText: 'No jobs yet' }).waitFor();
  // No artifact was uploaded in this test: the form says how to add one.
  await page.locator('#new-job output', { hasText: 'No artifact uploaded yet' }).waitFor();
  await shot('jobs');
});

await finish();

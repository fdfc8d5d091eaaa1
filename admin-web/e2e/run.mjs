// End-to-end test of the admin console in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against the real control plane, edge and mock upstream on loopback.
//
//   npm run e2e            (after npm run build; the binaries must exist, see e2e/stack.mjs)
//
// Environment: AIPROXY_BIN_DIR (default <repo>/target/debug), CHROMIUM_PATH (default
// /usr/bin/chromium), E2E_SCREENSHOTS (default <repo>/target/admin-web-screenshots),
// E2E_SUMMARY (a file that receives {"passed":N,"failed":N}), E2E_KEEP_TMP=1 keeps the logs.
//
// E2E_DOCS_IMG=1 also copies the Reports screenshot to docs/img/admin-reports.png.
//
// Each step prints "ok" or "FAIL"; a browser console error or page error that the step did not
// expect fails it. Steps depend on each other, so the first failure skips the rest (counted as failed).

import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { SetupError, Stack } from './stack.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const webRoot = resolve(here, '..');
const repo = resolve(webRoot, '..');
const webDir = join(webRoot, 'dist');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const shots = process.env.E2E_SCREENSHOTS || join(repo, 'target', 'admin-web-screenshots');
const ZONE = 'Asia/Kolkata'; // UTC+05:30 all year: any zone mix-up shows.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const DAILY_TOKEN_CAP = 100000;
const TOKEN_BUDGET = 1000000;

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message);
}

/** `YYYY-MM-DDTHH:MM` for `date` as a wall clock in `zone`. */
function localIn(zone, date) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
    })
      .formatToParts(date)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
}

const results = [];
const planned = [];
let page;
let consoleProblems = [];
let expectedConsole = [];

function step(name, fn) {
  planned.push({ name, fn });
}

async function runSteps() {
  let skipping = false;
  for (const [i, { name, fn }] of planned.entries()) {
    const label = `${String(i + 1).padStart(2, '0')} ${name}`;
    if (skipping) {
      results.push({ name, ok: false, skipped: true });
      console.log(`SKIP ${label}`);
      continue;
    }
    consoleProblems = [];
    expectedConsole = [];
    const started = Date.now();
    try {
      await fn();
      await sleep(50); // let late console messages of this step arrive
      const unexpected = consoleProblems.filter((p) => !expectedConsole.some((re) => re.test(p)));
      check(unexpected.length === 0, `browser console errors:\n  ${unexpected.join('\n  ')}`);
      results.push({ name, ok: true });
      console.log(`ok   ${label} (${Date.now() - started} ms)`);
    } catch (e) {
      results.push({ name, ok: false });
      console.log(`FAIL ${label}\n     ${(e instanceof Failure ? e.message : e.stack ?? String(e)).replace(/\n/g, '\n     ')}`);
      skipping = true;
      if (page) {
        await page.screenshot({ path: join(shots, `failure-${String(i + 1).padStart(2, '0')}.png`), fullPage: true }).catch(() => {});
      }
    }
  }
}

/** A network error the step provokes on purpose (Chromium logs refused fetches as console errors). */
function allowConsole(re) {
  expectedConsole.push(re);
}

/** A form control by its label's text; required fields' labels end with an aria-hidden " *". */
function field(label) {
  const escaped = label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return page.getByLabel(new RegExp(`^${escaped}( \\*)?$`));
}

async function shot(name, options = {}) {
  await page.screenshot({ path: join(shots, `${name}.png`), ...options });
}

async function main() {
  check(existsSync(join(webDir, 'index.html')), `the console is not built: no ${webDir}/index.html (run npm run build)`);
  check(existsSync(chromiumPath), `no Chromium at ${chromiumPath}: apt-get install -y chromium (scripts/admin-web-test.sh does it)`);
  const stack = new Stack(repo);
  mkdirSync(shots, { recursive: true });
  for (const f of readdirSync(shots)) if (f.endsWith('.png')) rmSync(join(shots, f));
  const onSignal = (sig) => {
    stack.killNow();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => stack.killNow());

  let browser;
  let context;
  const requestUrls = [];
  let attendeeKey = '';
  let secondKey = '';
  let eventId = '';

  /**
   * The usage the mock upstream reported to each attendee key, read from the answers (the mock
   * draws new numbers for every call): what the reports must show.
   */
  const reported = new Map();
  const ZERO_USAGE = { calls: 0, prompt: 0, completion: 0, total: 0, cached: 0 };
  function usageOf(body, streamed) {
    if (!streamed) return JSON.parse(body).usage ?? null;
    // The stream's last chunk with a usage object (asked for with stream_options.include_usage).
    const chunks = body
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:') && !line.includes('[DONE]'))
      .map((line) => JSON.parse(line.slice(5)));
    return chunks.filter((c) => c.usage).pop()?.usage ?? null;
  }
  async function callEdge(key, { stream = false, deployment = 'gpt-4o' } = {}) {
    const res = await fetch(`${stack.edgeUrl}/api/v1/openai/deployments/${deployment}/chat/completions?api-version=2024-10-21`, {
      method: 'POST',
      headers: { 'api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({
        messages: [{ role: 'user', content: 'Hello from the admin console test' }],
        ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
      }),
    });
    const body = await res.text();
    if (res.status === 200) {
      const usage = usageOf(body, stream);
      if (!usage) throw new Failure(`an answer without usage: ${body.slice(0, 300)}`);
      const sum = reported.get(key) ?? { ...ZERO_USAGE };
      reported.set(key, {
        calls: sum.calls + 1,
        prompt: sum.prompt + usage.prompt_tokens,
        completion: sum.completion + usage.completion_tokens,
        total: sum.total + usage.total_tokens,
        cached: sum.cached + (usage.prompt_tokens_details?.cached_tokens ?? 0),
      });
    }
    return { status: res.status, body };
  }

  /** Edges get catalog changes pushed within milliseconds; allow a few seconds on a busy machine. */
  async function edgeEventually(key, wanted, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    let last;
    while (Date.now() < deadline) {
      last = await callEdge(key);
      if (last.status === wanted) return last;
      await sleep(200);
    }
    throw new Failure(`the edge answered ${last?.status} (wanted ${wanted}): ${last?.body}`);
  }

  step('start the mock upstream, the control plane (serving admin-web/dist) and an edge on loopback', async () => {
    await stack.start({ webDir });
  });

  step('the control plane serves the console at / and client-side routes fall back to index.html', async () => {
    for (const path of ['/', '/resources', '/events/some-id']) {
      const res = await fetch(`${stack.adminUrl}${path}`);
      const text = await res.text();
      check(res.status === 200 && text.includes('<div id="root">'), `GET ${path}: ${res.status} ${text.slice(0, 200)}`);
    }
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-GB', timezoneId: 'Europe/London' });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: stack.adminUrl });
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleProblems.push(`${msg.text()} [${msg.location().url ?? ''}]`);
    });
    page.on('pageerror', (err) => consoleProblems.push(`page error: ${err.message}`));
    page.on('request', (req) => requestUrls.push(req.url()));
  });

  step('sign-in refuses a wrong token with a clear message', async () => {
    allowConsole(/status of 401/);
    await page.goto(`${stack.adminUrl}/`);
    await field('Admin token').fill('not-the-admin-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    const text = await alert.innerText();
    check(/admin token was not accepted/i.test(text) && text.includes('AIPROXY_ADMIN_TOKEN'), `sign-in message: ${text}`);
    await shot('01-sign-in-wrong-token');
  });

  step('sign in with the admin token: it stays out of every URL and lives in session storage', async () => {
    await field('Admin token').fill(stack.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Resources', level: 1 }).waitFor();
    check(!page.url().includes(stack.adminToken), `the token is in the address: ${page.url()}`);
    const stored = await page.evaluate(() => [sessionStorage.length, localStorage.length, document.cookie]);
    check(stored[0] === 1 && stored[1] === 0 && stored[2] === '', `storage after sign-in: ${JSON.stringify(stored)}`);
  });

  step('+ New Resource: a managed-identity Foundry_Agent on a cognitiveservices address shows the endpoint error with the right form', async () => {
    await page.getByRole('link', { name: '+ New Resource' }).click();
    await page.getByRole('heading', { name: 'New resource' }).waitFor();
    await field('Friendly Name').fill('Hackathon agents');
    await field('Deployment Name').fill('hackathon-agent');
    await field('Type').selectOption({ label: 'Foundry_Agent' });
    await field('Endpoint').fill('https://myhub.cognitiveservices.azure.com/');
    await field('Region').fill('swedencentral');
    await field('Use Managed Identity').check();
    const key = field('Key');
    check(await key.isDisabled(), 'the key field should be disabled with managed identity');
    const keyHint = await page.locator('#key-hint').innerText();
    check(/not used/i.test(keyHint), `key hint with managed identity: ${keyHint}`);
    check(await field('Active').isChecked(), 'Active should start checked');
    await page.getByRole('button', { name: 'Save' }).click();
    const error = page.locator('#endpoint_url-error');
    await error.waitFor();
    const text = await error.innerText();
    check(
      text.includes('https://<account>.services.ai.azure.com/api/projects/<project>') &&
        text.includes('https://myhub.services.ai.azure.com/api/projects/<project>'),
      `endpoint error: ${text}`,
    );
    check((await field('Endpoint').getAttribute('aria-invalid')) === 'true', 'the endpoint should be aria-invalid');
    check(await field('Endpoint').evaluate((el) => el === document.activeElement), 'focus should move to the endpoint');
    await shot('02-resource-form-endpoint-error', { fullPage: true });
  });

  step('a refusal only the control plane makes (loopback agent address without /api/projects) is shown inline too', async () => {
    allowConsole(/status of 400/);
    await field('Endpoint').fill(`${stack.mockUrl}/agents`);
    await page.getByRole('button', { name: 'Save' }).click();
    const error = page.locator('#endpoint_url-error');
    await page.waitForFunction(() => /api\/projects/.test(document.querySelector('#endpoint_url-error')?.textContent ?? '') && !document.querySelector('#endpoint_url-error')?.textContent?.startsWith('A Foundry'));
    const text = await error.innerText();
    check(!text.startsWith('endpoint_url:'), `the field prefix should be stripped: ${text}`);
  });

  step('fixed to the project endpoint, it saves and the table shows it with the "Managed identity" badge', async () => {
    await field('Endpoint').fill('https://myhub.services.ai.azure.com/api/projects/hackathon');
    check((await page.locator('#endpoint_url-error').count()) === 0, 'the endpoint error should clear once fixed');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: 'Resources', level: 1 }).waitFor();
    const row = page.locator('#resources-table tbody tr', { hasText: 'Hackathon agents' });
    await row.waitFor();
    const text = await row.innerText();
    check(text.includes('Managed identity') && text.includes('Foundry_Agent') && text.includes('hackathon-agent'), `row: ${text}`);
    // AIPROXY_CREDENTIAL=none: the token status shows the control plane's error instead of a token.
    check(/Token error|No token yet/.test(text), `token status: ${text}`);
  });

  step('+ New Resource: a Foundry_Model with an API key on the mock upstream (key required until typed)', async () => {
    await page.getByRole('link', { name: '+ New Resource' }).click();
    await field('Friendly Name').fill('GPT-4o (mock)');
    await field('Deployment Name').fill('gpt-4o');
    await field('Type').selectOption({ label: 'Foundry_Model' });
    await field('Endpoint').fill(stack.mockUrl);
    await field('Region').fill('local');
    await page.getByRole('button', { name: 'Save' }).click();
    const keyError = await page.locator('#key-error').innerText();
    check(/required unless/i.test(keyError), `key error: ${keyError}`);
    await field('Key').fill(stack.mockKey);
    await page.getByRole('button', { name: 'Save' }).click();
    const row = page.locator('#resources-table tbody tr', { hasText: 'GPT-4o (mock)' });
    await row.waitFor();
    const text = await row.innerText();
    check(text.includes('API key') && !text.includes(stack.mockKey), `row: ${text}`);
    await page.getByRole('status').filter({ hasText: 'Saved' }).waitFor();
    await shot('03-resources');
  });

  step('search and filters narrow the table', async () => {
    await field('Authentication').selectOption({ label: 'Managed identity' });
    await page.waitForFunction(() => document.querySelectorAll('#resources-table tbody tr').length === 1);
    check((await page.locator('#resources-table tbody').innerText()).includes('Hackathon agents'), 'MI filter');
    await field('Authentication').selectOption({ label: 'Any' });
    await field('Search').fill('gpt-4o');
    await page.waitForFunction(() => document.querySelectorAll('#resources-table tbody tr').length === 1);
    check((await page.locator('#resources-table tbody').innerText()).includes('GPT-4o (mock)'), 'search');
    await field('Search').fill('');
    await page.waitForFunction(() => document.querySelectorAll('#resources-table tbody tr').length === 2);
  });

  step(`Events → + New Event exposing both resources, yesterday → tomorrow in ${ZONE}`, async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Events' }).click();
    await page.getByRole('heading', { name: 'Events', level: 1 }).waitFor();
    await page.getByRole('link', { name: '+ New Event' }).click();
    await page.getByRole('heading', { name: 'New event' }).waitFor();
    const now = Date.now();
    const starts = localIn(ZONE, new Date(now - 24 * 3600_000));
    const ends = localIn(ZONE, new Date(now + 24 * 3600_000));
    await field('Name').fill('Spring hackathon');
    await field('Time zone').selectOption(ZONE);
    const zoneHint = await page.locator('#time_zone-hint').innerText();
    check(zoneHint.includes('Local time there now') && zoneHint.includes('GMT+5:30'), `time-zone hint: ${zoneHint}`);
    await field('Starts').fill(starts);
    await field('Ends').fill(ends);
    const startHint = await page.locator('#starts_at-hint').innerText();
    check(startHint.includes('in your time zone (Europe/London)'), `start hint: ${startHint}`);
    await field('Max tokens per request').fill('4096');
    await field('Daily tokens per attendee').fill('12x');
    await page.getByRole('button', { name: 'Save' }).click();
    const capError = await page.locator('#daily_token_cap-error').innerText();
    check(/whole number/.test(capError), `daily token cap error: ${capError}`);
    check(await field('Daily tokens per attendee').evaluate((el) => el === document.activeElement), 'focus should move to the daily token cap');
    await field('Daily tokens per attendee').fill(String(DAILY_TOKEN_CAP));
    await field('Token budget for the event').fill(String(TOKEN_BUDGET));
    await field('Organizer').fill('Ada Lovelace');
    await field('Organizer email').fill('ada@example.com');
    await page.getByRole('checkbox', { name: /Hackathon agents/ }).check();
    await page.getByRole('checkbox', { name: /GPT-4o \(mock\)/ }).check();
    await shot('04-event-form', { fullPage: true });
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: /Spring hackathon/, level: 1 }).waitFor();
    eventId = decodeURIComponent(new URL(page.url()).pathname.split('/')[2] ?? '');
    check(eventId.length > 0, `event page address: ${page.url()}`);
    const summary = await page.locator('.summary').innerText();
    check(summary.includes(ZONE) && summary.includes('Hackathon agents') && summary.includes('GPT-4o (mock)'), `summary: ${summary}`);
    check(
      summary.includes('4,096 max tokens per request') &&
        summary.includes('100,000 tokens per attendee per UTC day') &&
        summary.includes('1,000,000 tokens for the whole event'),
      `caps: ${summary}`,
    );
    // Read back from the API, not only from the page.
    const stored = await (await fetch(`${stack.adminUrl}/admin/api/v1/events/${encodeURIComponent(eventId)}`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json();
    check(stored.daily_token_cap === DAILY_TOKEN_CAP && stored.token_budget === TOKEN_BUDGET, `stored caps: ${JSON.stringify(stored)}`);
    check((await page.locator('h1 .badge').innerText()) === 'Live', 'the event should be live');
  });

  step('add an attendee: the key is shown once and Copy puts it on the clipboard', async () => {
    await field('User ID').fill('grace@example.com');
    await page.getByRole('button', { name: 'Add attendee' }).click();
    const keyBox = page.locator('#new-api-key');
    await keyBox.waitFor();
    const shown = await keyBox.inputValue();
    check(/^aip_/.test(shown), `shown key: ${shown}`);
    await page.getByRole('button', { name: 'Copy key' }).click();
    await page.getByRole('button', { name: 'Copied' }).waitFor();
    let copied = '';
    try {
      copied = await page.evaluate(() => navigator.clipboard.readText());
    } catch (e) {
      console.log(`     (clipboard unreadable headless: ${e.message}; using the displayed key)`);
      copied = shown;
    }
    check(copied === shown, 'the clipboard should hold the shown key');
    attendeeKey = copied;
    const row = page.locator('#attendees-table tbody tr', { hasText: 'grace@example.com' });
    await row.waitFor();
    check((await row.innerText()).includes('Active'), 'the attendee should be active');
    await shot('05-event-detail-new-key', { fullPage: true });
  });

  step('the copied key calls the edge: chat completion answered 200 by the mock through the edge', async () => {
    const res = await edgeEventually(attendeeKey, 200);
    const body = JSON.parse(res.body);
    check(Array.isArray(body.choices) && body.choices.length > 0, `edge answer: ${res.body.slice(0, 300)}`);
  });

  step('the key is never shown again (reload); the attendee list and search remain', async () => {
    await page.reload();
    await page.locator('#attendees-table').waitFor();
    check((await page.locator('#new-api-key').count()) === 0, 'the key panel should be gone after a reload');
    const html = await page.content();
    check(!html.includes(attendeeKey), 'the key should not be in the page any more');
    await field('User ID').fill('linus@example.com');
    await page.getByRole('button', { name: 'Add attendee' }).click();
    await page.locator('#new-api-key').waitFor();
    secondKey = await page.locator('#new-api-key').inputValue();
    check(secondKey !== attendeeKey, 'each attendee gets their own key');
    await page.getByRole('button', { name: 'Done, hide the key' }).click();
    check((await page.locator('#new-api-key').count()) === 0, 'Done should hide the key');
    await field('Search attendees').fill('grace');
    await page.waitForFunction(() => document.querySelectorAll('#attendees-table tbody tr').length === 1);
    await field('Search attendees').fill('');
  });

  step('deactivate the attendee: the edge refuses the key with 401', async () => {
    await page.getByRole('button', { name: 'Deactivate grace@example.com' }).click();
    const row = page.locator('#attendees-table tbody tr', { hasText: 'grace@example.com' });
    await row.getByText('Deactivated').waitFor();
    const res = await edgeEventually(attendeeKey, 401);
    check(res.body.includes('deactivated'), `edge answer: ${res.body}`);
    await shot('06-event-detail', { fullPage: true });
  });

  step('the events list shows the event, its window in its zone and its resources', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Events' }).click();
    const row = page.locator('#events-table tbody tr', { hasText: 'Spring hackathon' });
    await row.waitFor();
    const text = await row.innerText();
    check(text.includes(ZONE) && text.includes('Live') && text.includes('GPT-4o (mock)') && text.includes('4096'), `row: ${text}`);
    await shot('07-events');
  });

  step('deleting a resource an event uses is refused with the control plane’s message', async () => {
    allowConsole(/status of 409/);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Resources' }).click();
    await page.getByRole('button', { name: 'Delete GPT-4o (mock)' }).click();
    await page.getByRole('group', { name: /Delete “GPT-4o \(mock\)”\?/ }).getByRole('button', { name: 'Delete' }).click();
    const alert = page.getByRole('alert').filter({ hasText: 'Could not delete' });
    await alert.waitFor();
    const text = await alert.innerText();
    check(text.includes('Spring hackathon') || /in use|used by/i.test(text), `409 message: ${text}`);
    check((await page.locator('#resources-table tbody tr', { hasText: 'GPT-4o (mock)' }).count()) === 1, 'the resource should remain');
  });

  step('edit keeps the stored key when the key field is left blank; duplicate starts without a key', async () => {
    await page.getByRole('link', { name: 'Edit GPT-4o (mock)' }).click();
    await page.getByRole('heading', { name: /Edit resource/ }).waitFor();
    check((await page.locator('#key-hint').innerText()).includes('A key is stored'), 'edit key hint');
    await field('Region').fill('local-2');
    check(!(await field('Use max_completion_tokens (reasoning models)').isChecked()), 'use_max_completion_tokens should start unchecked');
    await field('Use max_completion_tokens (reasoning models)').check();
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('#resources-table tbody tr', { hasText: 'local-2' }).waitFor();
    // The mock upstream checks its api-key: a 200 after the edit proves the stored key was kept.
    await edgeEventually(secondKey, 200);
    await page.getByRole('link', { name: 'Duplicate GPT-4o (mock)' }).click();
    await page.getByRole('heading', { name: 'Duplicate resource' }).waitFor();
    check((await field('Friendly Name').inputValue()) === 'GPT-4o (mock) (copy)', 'duplicate name');
    check((await field('Key').inputValue()) === '', 'duplicate key must be blank');
    check(await field('Use max_completion_tokens (reasoning models)').isChecked(), 'use_max_completion_tokens should be stored (and duplicated)');
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('heading', { name: 'Resources', level: 1 }).waitFor();
  });

  const count = (n) => new Intl.NumberFormat('en-GB').format(n);
  const all = () =>
    [...reported.values()].reduce(
      (a, u) => ({ calls: a.calls + u.calls, prompt: a.prompt + u.prompt, completion: a.completion + u.completion, total: a.total + u.total, cached: a.cached + u.cached }),
      { ...ZERO_USAGE },
    );
  const okCalls = () => all().calls;
  const expectedTokens = () => all().total;
  let todayUtc = '';

  /** Polls (clicking the page's Refresh) until `read()` gives `wanted`: edges send usage about once a second. */
  async function eventually(what, read, wanted, refresh, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
      last = await read();
      if (last === wanted) return;
      if (Date.now() > deadline) throw new Failure(`${what}: ${JSON.stringify(last)}, wanted ${JSON.stringify(wanted)}`);
      await sleep(500);
      if (refresh) await refresh();
    }
  }

  async function usageApi(query) {
    const res = await fetch(`${stack.adminUrl}/admin/api/v1/usage?${new URLSearchParams(query)}`, {
      headers: { authorization: `Bearer ${stack.adminToken}` },
    });
    check(res.status === 200, `GET /usage: ${res.status} ${await res.clone().text()}`);
    return res.json();
  }

  step('model calls through the edge with an attendee key are metered: the usage API counts the upstream’s tokens exactly', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await callEdge(secondKey);
      check(res.status === 200, `call ${i + 1}: ${res.status} ${res.body.slice(0, 200)}`);
    }
    const streamed = await callEdge(secondKey, { stream: true });
    check(streamed.status === 200 && streamed.body.includes('data:'), `streamed call: ${streamed.status} ${streamed.body.slice(0, 200)}`);
    // A deployment the event does not expose: refused by the edge, an error in the reports.
    const refused = await callEdge(secondKey, { deployment: 'not-exposed' });
    check(refused.status >= 400, `a deployment the event does not expose: ${refused.status}`);
    todayUtc = new Date().toISOString().slice(0, 10);
    const from = `${todayUtc}T00:00:00Z`;
    await eventually(
      'total_tokens of the event today (GET /usage)',
      async () => (await usageApi({ event_id: eventId, from, granularity: 'day' })).totals.total_tokens,
      expectedTokens(),
    );
    const { totals } = await usageApi({ event_id: eventId, from, granularity: 'day' });
    const sent = all();
    check(
      totals.prompt_tokens === sent.prompt && totals.completion_tokens === sent.completion && totals.cached_tokens === sent.cached,
      `totals ${JSON.stringify(totals)}, the answers reported ${JSON.stringify(sent)}`,
    );
    check(totals.requests >= sent.calls + 1 && totals.errors >= 1, `requests and errors: ${JSON.stringify(totals)} (${sent.calls} answered)`);
    // The mock's own ledger of what it reported (its only client here is the edge).
    const ledger = await (await fetch(`${stack.mockUrl}/_mock/usage`)).json();
    check(ledger.total.total_tokens === sent.total && ledger.total.requests === sent.calls, `mock ledger ${JSON.stringify(ledger.total)}, answers ${JSON.stringify(sent)}`);
    const who = (k) => (k === attendeeKey ? 'grace' : 'linus');
    console.log(`     answers: ${JSON.stringify(Object.fromEntries([...reported].map(([k, u]) => [who(k), u])))}; GET /usage totals: ${JSON.stringify(totals)}`);
  });

  step('the event page shows today’s requests, tokens and errors, and links to the Reports page', async () => {
    await page.goto(`${stack.adminUrl}/events/${encodeURIComponent(eventId)}`);
    const today = page.getByRole('region', { name: /Today/ });
    await today.waitFor();
    await eventually(
      'today’s tokens on the event page',
      async () => (await today.locator('[data-stat="Tokens"]').textContent().catch(() => null))?.trim(),
      count(expectedTokens()),
      () => today.getByRole('button', { name: 'Refresh' }).click(),
    );
    const requests = Number((await today.locator('[data-stat="Requests"]').innerText()).replace(/,/g, ''));
    const errors = Number((await today.locator('[data-stat="Errors"]').innerText()).replace(/,/g, ''));
    check(requests >= okCalls() + 1 && errors >= 1, `today: ${requests} requests, ${errors} errors (${okCalls()} answered)`);
    await shot('10-event-detail-today', { fullPage: true });
    await page.locator('.page-head').getByRole('link', { name: 'Reports' }).click();
    await page.getByRole('heading', { name: /^Reports/, level: 1 }).waitFor();
    check(new URL(page.url()).pathname === `/events/${encodeURIComponent(eventId)}/reports`, `reports address: ${page.url()}`);
    const current = await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Reports' }).getAttribute('aria-current');
    check(current === 'page', `the Reports navigation link should be current: ${current}`);
  });

  step('Reports: totals, the chart and the tables by resource and by attendee show the usage; headers sort', async () => {
    const stat = (label) => page.locator(`.report [data-stat="${label}"]`);
    await eventually(
      'total tokens on the Reports page',
      async () => (await stat('Total tokens').textContent().catch(() => null))?.trim(),
      count(expectedTokens()),
      () => page.getByRole('button', { name: 'Refresh' }).click(),
    );
    check((await stat('Prompt tokens').innerText()) === count(all().prompt), 'prompt tokens');
    check((await stat('Completion tokens').innerText()) === count(all().completion), 'completion tokens');
    check((await stat('Cached tokens').innerText()) === count(all().cached), 'cached tokens');
    const requests = Number((await stat('Requests').innerText()).replace(/,/g, ''));
    // Last 7 days by day: 7 bars, the usage in today's.
    const bars = await page.locator('#requests-chart .chart-bar').evaluateAll((els) =>
      els.map((el) => ({ bucket: el.getAttribute('data-bucket'), value: Number(el.getAttribute('data-value')), title: el.querySelector('title')?.textContent })),
    );
    check(bars.length === 7, `bars: ${bars.length}`);
    const todayBar = bars.find((b) => b.bucket?.startsWith(todayUtc));
    check(todayBar?.value === requests && /requests?, \d+ errors?/.test(todayBar.title ?? ''), `today's bar: ${JSON.stringify(todayBar)} (${requests} requests)`);
    const tokenBars = await page.locator('#tokens-chart .chart-bar').evaluateAll((els) => els.map((el) => Number(el.getAttribute('data-value'))));
    check(tokenBars.reduce((a, v) => a + v, 0) === expectedTokens(), `token bars: ${tokenBars}`);

    const byResource = page.locator('#usage-by-resource tbody tr', { hasText: 'GPT-4o (mock)' });
    const resourceText = await byResource.innerText();
    check(resourceText.includes(count(expectedTokens())) && resourceText.includes('gpt-4o'), `resource row: ${resourceText}`);
    const graceTokens = reported.get(attendeeKey)?.total ?? 0;
    const linusTokens = reported.get(secondKey)?.total ?? 0;
    const attendeeRows = async () =>
      page.locator('#usage-by-attendee tbody tr').evaluateAll((rows) =>
        rows.map((r) => [r.querySelector('th')?.textContent, r.querySelector('td:last-child')?.textContent]),
      );
    const rows = await attendeeRows();
    check(
      JSON.stringify(rows) ===
        JSON.stringify(
          [
            ['grace@example.com', count(graceTokens)],
            ['linus@example.com', count(linusTokens)],
          ].sort((a, b) => Number(b[1].replace(/,/g, '')) - Number(a[1].replace(/,/g, ''))),
        ),
      `attendee rows (by total tokens, largest first): ${JSON.stringify(rows)}`,
    );
    const linusErrors = await page.locator('#usage-by-attendee tbody tr', { hasText: 'linus@example.com' }).locator('td').nth(1).innerText();
    check(/^[1-9]/.test(linusErrors), `linus's errors: ${linusErrors}`);
    const header = page.locator('#usage-by-attendee thead th', { hasText: 'Attendee' });
    check((await header.getAttribute('aria-sort')) === 'none', 'not sorted by attendee yet');
    await header.getByRole('button').click();
    check((await header.getAttribute('aria-sort')) === 'ascending', 'sorted by attendee, ascending');
    check((await attendeeRows()).map((r) => r[0]).join() === 'grace@example.com,linus@example.com', 'A to Z');
    await header.getByRole('button').click();
    check((await header.getAttribute('aria-sort')) === 'descending', 'sorted by attendee, descending');
    check((await attendeeRows()).map((r) => r[0]).join() === 'linus@example.com,grace@example.com', 'Z to A');
  });

  step('Reports by hour for today: 24 bars; Download CSV fetches the rows with the admin token', async () => {
    await field('From (UTC)').fill(todayUtc);
    await field('To (UTC, included)').fill(todayUtc);
    await field('Granularity').selectOption({ label: 'By hour' });
    await page.waitForFunction(() => document.querySelectorAll('#requests-chart .chart-bar').length === 24);
    // The filters are in the address (`to` only once it differs from its default, today).
    const q = new URL(page.url()).searchParams;
    check(q.get('from') === todayUtc && (q.get('to') ?? todayUtc) === todayUtc && q.get('granularity') === 'hour', `address: ${page.url()}`);
    check((await field('To (UTC, included)').inputValue()) === todayUtc, 'the To date');
    await page.locator('.report-range', { hasText: /UTC\)$/ }).waitFor();
    const hourly = await page.locator('#tokens-chart .chart-bar').evaluateAll((els) => els.map((el) => Number(el.getAttribute('data-value'))));
    check(hourly.reduce((a, v) => a + v, 0) === expectedTokens(), `hourly token bars: ${hourly}`);
    await page.evaluate(() => document.activeElement?.blur());
    await page.mouse.move(0, 0);
    await shot('11-reports', { fullPage: true });
    if (process.env.E2E_DOCS_IMG === '1') copyFileSync(join(shots, '11-reports.png'), join(repo, 'docs', 'img', 'admin-reports.png'));

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    const name = download.suggestedFilename();
    check(name === `usage-spring-hackathon-${todayUtc}-to-${todayUtc}-hour-by-resource-attendee.csv`, `file name: ${name}`);
    const csv = readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
    const columns = csv[0].split(',');
    for (const c of ['bucket', 'resource_id', 'user_id', 'requests', 'errors', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cached_tokens']) {
      check(columns.includes(c), `CSV header ${csv[0]} lacks ${c}`);
    }
    const at = columns.indexOf('total_tokens');
    const user = columns.indexOf('user_id');
    const body = csv.slice(1).map((line) => line.split(','));
    const sum = body.reduce((a, cells) => a + Number(cells[at]), 0);
    check(sum === expectedTokens(), `CSV total_tokens ${sum}, wanted ${expectedTokens()}:\n${csv.join('\n')}`);
    check(body.some((cells) => cells[user] === 'linus@example.com'), `CSV rows per attendee:\n${csv.join('\n')}`);
    await page.getByRole('status').filter({ hasText: `Downloaded ${name}` }).waitFor();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Resources' }).click();
    await page.getByRole('heading', { name: 'Resources', level: 1 }).waitFor();
  });

  step('keyboard: Tab reaches the skip link, then the main navigation; every field is labelled', async () => {
    await page.reload();
    await page.locator('#resources-table').waitFor();
    await page.keyboard.press('Tab');
    check((await page.evaluate(() => document.activeElement?.textContent)) === 'Skip to content', 'first Tab: skip link');
    await page.keyboard.press('Tab');
    check((await page.evaluate(() => document.activeElement?.textContent)) === 'Resources', 'second Tab: Resources link');
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
        .map((el) => el.outerHTML.slice(0, 80)),
    );
    check(unlabelled.length === 0, `unlabelled fields: ${unlabelled.join(', ')}`);
  });

  step('phone size (390×844): resources and the event page fit without sideways scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await page.locator('#resources-table').waitFor();
    let width = await page.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 390, `resources page is ${width}px wide`);
    await shot('08-resources-phone', { fullPage: true });
    await page.goto(`${stack.adminUrl}/events/${encodeURIComponent(eventId)}`);
    await page.locator('#attendees-table').waitFor();
    width = await page.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 390, `event page is ${width}px wide`);
    await shot('09-event-detail-phone', { fullPage: true });
    await page.goto(`${stack.adminUrl}/events/${encodeURIComponent(eventId)}/reports`);
    await page.locator('#usage-by-attendee').waitFor();
    width = await page.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 390, `reports page is ${width}px wide`);
    await shot('12-reports-phone', { fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  step('sign out; the token is gone and a revoked token ends the session with a message', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await field('Admin token').waitFor();
    check((await page.evaluate(() => sessionStorage.length)) === 0, 'session storage should be empty after sign-out');
    // A token the control plane no longer accepts (as after a rotation) ends the session on the next call.
    allowConsole(/status of 401/);
    await page.evaluate(() => sessionStorage.setItem('aiproxy.admin.token', 'rotated-away'));
    await page.goto(`${stack.adminUrl}/events`);
    const alert = page.getByRole('alert');
    await alert.waitFor();
    check(/session has ended/i.test(await alert.innerText()), `expired message: ${await alert.innerText()}`);
    check(requestUrls.every((u) => !u.includes(stack.adminToken)), 'the admin token appeared in a request URL');
  });

  let failedStack = false;
  try {
    await runSteps();
  } finally {
    failedStack = results.some((r) => !r.ok);
    await context?.close().catch(() => {});
    await browser?.close().catch(() => {});
    if (failedStack) {
      for (const name of ['control-plane', 'edge', 'mock-azure']) {
        const tail = stack.tail(name, 15);
        if (tail) console.log(`--- last lines of ${name}'s log ---\n${tail}`);
      }
    }
    await stack.stop({ keep: process.env.E2E_KEEP_TMP === '1' });
  }
}

let fatal = null;
try {
  await main();
} catch (e) {
  fatal = e;
  console.log(`FAIL e2e setup: ${e instanceof Failure || e instanceof SetupError ? e.message : e.stack ?? String(e)}`);
}
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed + (fatal ? 1 : 0);
console.log(`e2e: ${passed} passed, ${failed} failed (screenshots in ${shots})`);
if (process.env.E2E_SUMMARY) writeFileSync(process.env.E2E_SUMMARY, JSON.stringify({ passed, failed }));
process.exit(failed === 0 ? 0 : 1);

// The control plane's web console (/licensing) in headless Debian Chromium,
// driven by playwright-core: every role logs in, a license goes through issue,
// reveal and copy, revoke with grace, the customer's banners, reinstate,
// regenerate, rebind, suspend and restore; permissions, CSRF, screenshots.
//
// Run by tests/tests/it/console.rs, which starts the control plane and creates
// the users. Environment:
//   CP_URL          the control plane, e.g. http://127.0.0.1:PORT
//   CP_USERS        JSON {"super_admin":{"name","password"},"support":{..},
//                   "onboarding":{..},"customer":{..,"customer":"Acme Corp"}}
//   SCREENSHOT_DIR  where license-list.png, license-card.png, signing-keys.png go
//
// Prints one line per step ("ok - ..." or "FAIL - ...") and stops at the first
// failure with exit code 1, after printing the page's URL, the status of its
// last load, its visible text and the browser's console errors.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const ACTION_TIMEOUT_MS = 10_000;
const WHOLE_RUN_MS = 180_000;
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const DAY_MS = 86_400_000;

// ----- configuration -----

function requireEnv(name) {
  const value = process.env[name];
  if (!value) {
    console.log(`FAIL - configuration: the environment variable ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const CP_URL = requireEnv('CP_URL').replace(/\/+$/, '');
const SCREENSHOT_DIR = requireEnv('SCREENSHOT_DIR');
let USERS;
try {
  USERS = JSON.parse(requireEnv('CP_USERS'));
  for (const role of ['super_admin', 'support', 'onboarding', 'customer']) {
    if (!USERS[role]?.name || !USERS[role]?.password) {
      throw new Error(`no name and password for ${role}`);
    }
  }
  if (!USERS.customer.customer) throw new Error('no customer company for the customer user');
} catch (e) {
  console.log(`FAIL - configuration: CP_USERS: ${e.message}`);
  process.exit(2);
}
const ACME = USERS.customer.customer;
const OTHER_CUSTOMER = 'Globex Industrial';
mkdirSync(SCREENSHOT_DIR, { recursive: true });

// ----- reporting -----

let browser;
let passed = 0;
// What the page in the current step is, for the failure report.
let currentPage = null;
const pageInfo = new WeakMap();

function ok(what) {
  passed += 1;
  console.log(`ok - ${what}`);
}

async function report(step, error) {
  console.log(`FAIL - ${step}`);
  // Playwright colours its call logs; a test log is plain text.
  const message = String(error?.message ?? error).replace(/\x1b\[[0-9;]*m/g, '');
  const lines = message.split('\n').filter((line) => line.trim() !== '');
  console.log(`  error: ${lines.slice(0, 8).join('\n         ')}`);
  const page = currentPage;
  if (page && !page.isClosed()) {
    const info = pageInfo.get(page);
    console.log(`  page: ${page.url()}`);
    if (info?.lastLoad) console.log(`  last page load: ${info.lastLoad}`);
    let text;
    try {
      text = await page.locator('body').innerText({ timeout: 2_000 });
    } catch (e) {
      text = `(no visible text: ${e.message.split('\n')[0]})`;
    }
    console.log('  visible text (first 2000 characters):');
    for (const line of text.slice(0, 2000).split('\n')) console.log(`  | ${line}`);
    if (info?.errors.length) {
      console.log('  browser console errors:');
      for (const line of info.errors.slice(-10)) console.log(`  ! ${line}`);
    }
    const shot = join(SCREENSHOT_DIR, 'failure.png');
    try {
      await page.screenshot({ path: shot, fullPage: true, timeout: 5_000 });
      console.log(`  screenshot: ${shot}`);
    } catch {
      // The report above is what matters; a page that cannot be shot says so by its absence.
    }
  }
}

async function failAndExit(step, error) {
  await report(step, error);
  console.log(`# ${passed} steps passed before the failure`);
  try {
    await browser?.close();
  } catch {
    // Exiting closes the pipe to Chromium, which ends it anyway.
  }
  process.exit(1);
}

/** Runs one step; the first failure ends the run. */
async function step(what, page, body) {
  currentPage = page;
  let detail;
  try {
    detail = await body();
  } catch (e) {
    await failAndExit(what, e);
  }
  ok(detail ? `${what} (${detail})` : what);
}

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

// ----- the browser -----

/** A fresh browser context (cookies, storage) for one user, and its page. */
async function newSession(label) {
  const context = await browser.newContext({
    baseURL: CP_URL,
    viewport: { width: 1280, height: 800 },
    permissions: ['clipboard-read', 'clipboard-write'],
  });
  context.setDefaultTimeout(ACTION_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(ACTION_TIMEOUT_MS);
  const page = await context.newPage();
  const info = { label, lastLoad: null, errors: [] };
  pageInfo.set(page, info);
  page.on('response', (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) {
      info.lastLoad = `${response.status()} ${request.method()} ${response.url()}`;
    }
  });
  page.on('console', (message) => {
    if (message.type() === 'error') info.errors.push(message.text());
  });
  page.on('pageerror', (error) => info.errors.push(`uncaught: ${error.message}`));
  return { context, page };
}

/** GETs a console path; returns the HTTP status of the page that loaded. */
async function open(page, path) {
  const response = await page.goto(path, { waitUntil: 'load' });
  return response ? response.status() : 0;
}

/** Opens a path that must answer 200. */
async function openOk(page, path) {
  const status = await open(page, path);
  check(status === 200, `GET ${path} answered ${status}, not 200`);
}

/** Clicks something that submits a form or follows a link, and waits for the page that follows. */
async function clickAndLoad(page, locator) {
  const navigation = page.waitForNavigation({ waitUntil: 'load' });
  await locator.click();
  await navigation;
}

/** A button or a link with exactly this accessible name. */
function action(page, name) {
  return page
    .getByRole('button', { name, exact: true })
    .or(page.getByRole('link', { name, exact: true }));
}

/** Types into an input, or picks the option of a select with this value or label (else the first real one). */
async function fillField(locator, value) {
  if ((await locator.evaluate((el) => el.tagName)) !== 'SELECT') {
    await locator.fill(value);
    return;
  }
  const options = await locator.locator('option').evaluateAll((os) => os.map((o) => ({ value: o.value, label: o.textContent.trim() })));
  const chosen = options.find((o) => o.value === value || o.label === value) ?? options.find((o) => o.value !== '');
  check(chosen, `the select has no option for ${JSON.stringify(value)}`);
  await locator.selectOption(chosen.value);
}

async function text(locator) {
  const tag = await locator.evaluate((el) => el.tagName);
  const value = tag === 'INPUT' || tag === 'TEXTAREA' ? await locator.inputValue() : await locator.innerText();
  return value.trim();
}

async function badge(page) {
  return (await text(page.locator('#status-badge'))).toUpperCase();
}

async function expectBadge(page, expected) {
  const shown = await badge(page);
  check(shown === expected, `#status-badge shows ${JSON.stringify(shown)}, not ${expected}`);
}

/** Every POST form on the page carries a hidden csrf input. */
async function checkCsrfInputs(page) {
  const forms = page.locator('form');
  const count = await forms.count();
  for (let i = 0; i < count; i++) {
    const form = forms.nth(i);
    const method = ((await form.getAttribute('method')) ?? 'get').toLowerCase();
    if (method !== 'post') continue;
    const target = await form.getAttribute('action');
    const hidden = await form.locator('input[type="hidden"][name="csrf"]').count();
    check(hidden === 1, `the POST form to ${target} has ${hidden} hidden csrf inputs, not 1`);
  }
}

async function flash(page) {
  const shown = page.locator('#flash');
  await shown.waitFor({ state: 'visible' });
  return text(shown);
}

function cardPath(id) {
  return `/licensing/licenses/${id}`;
}

function onCard(page, id) {
  const path = new URL(page.url()).pathname;
  check(path === cardPath(id), `landed on ${path}, not the card ${cardPath(id)}`);
}

function isListPath(url) {
  const path = new URL(url).pathname;
  return path === '/licensing' || path === '/licensing/';
}

/** The YYYY-MM-DD dates within a day of now + days (UTC), for checks around midnight. */
function datesAround(days) {
  const at = Date.now() + days * DAY_MS;
  return [-1, 0, 1].map((d) => new Date(at + d * DAY_MS).toISOString().slice(0, 10));
}

function normalizeRole(role) {
  return role.toLowerCase().replace(/[\s_-]+/g, ' ').trim();
}

const NAV = ['Licenses', 'New license', 'Heartbeats', 'Signing Keys', 'Settings', 'Audit Log'];
const NAV_BY_ROLE = {
  super_admin: NAV,
  support: ['Licenses', 'New license', 'Heartbeats'],
  onboarding: ['Licenses', 'New license', 'Heartbeats'],
  customer: ['Licenses'],
};

async function checkNav(page, role) {
  const nav = page.locator('nav');
  for (const name of NAV) {
    const count = await nav.getByRole('link', { name, exact: true }).count();
    const expected = NAV_BY_ROLE[role].includes(name);
    check(
      expected ? count >= 1 : count === 0,
      expected ? `the nav has no "${name}" link` : `the nav shows "${name}" to ${role}`,
    );
  }
  check((await page.getByRole('button', { name: 'Sign out', exact: true }).count()) >= 1, 'no "Sign out" button');
  return NAV_BY_ROLE[role].join(', ');
}

/** Logs a role in through the form; the page lands on the license list. */
async function login(page, role) {
  const user = USERS[role];
  await openOk(page, '/licensing/login');
  await checkCsrfInputs(page);
  await page.getByLabel('Username', { exact: true }).fill(user.name);
  await page.getByLabel('Password', { exact: true }).fill(user.password);
  await clickAndLoad(page, page.getByRole('button', { name: 'Sign in', exact: true }));
  check(isListPath(page.url()), `after signing in the browser is on ${page.url()}, not /licensing`);
  const whoami = await text(page.locator('#whoami'));
  check(whoami.includes(user.name), `#whoami (${JSON.stringify(whoami)}) does not name ${user.name}`);
  check(
    normalizeRole(whoami).includes(normalizeRole(role)),
    `#whoami (${JSON.stringify(whoami)}) does not show the role ${role}`,
  );
  return whoami;
}

/** Issues a license through the "New license" form; returns its id and key. */
async function issue(page, customer) {
  await clickAndLoad(page, page.locator('nav').getByRole('link', { name: 'New license', exact: true }));
  const path = new URL(page.url()).pathname;
  check(path === '/licensing/license-new', `the "New license" link leads to ${path}`);
  await checkCsrfInputs(page);
  await fillField(page.getByLabel('Customer', { exact: true }), customer);
  await fillField(page.getByLabel('Product', { exact: true }), 'gateway');
  await fillField(page.getByLabel('Seats', { exact: true }), '5');
  const ends = page.getByLabel('Subscription ends', { exact: true });
  check((await ends.getAttribute('type')) === 'date', '"Subscription ends" is not a date input');
  await ends.fill(new Date(Date.now() + 365 * DAY_MS).toISOString().slice(0, 10));
  await clickAndLoad(page, page.getByRole('button', { name: 'Issue license', exact: true }));
  const id = await text(page.locator('#license-id'));
  check(/^lic_[A-Za-z0-9_-]+$/.test(id), `#license-id shows ${JSON.stringify(id)}, not a lic_ id`);
  const key = await text(page.locator('code#new-license-key'));
  check(/^pk_\S{8,}$/.test(key), `code#new-license-key shows ${JSON.stringify(key)}, not a pk_ key`);
  return { id, key };
}

/** Opens an action's confirmation page from the card, optionally fills it, and confirms. */
async function confirmAction(page, id, name, confirm, fill) {
  await openOk(page, cardPath(id));
  await clickAndLoad(page, action(page, name).first());
  await checkCsrfInputs(page);
  if (fill) await fill();
  await clickAndLoad(page, page.getByRole('button', { name: confirm, exact: true }));
}

function maskedOk(masked, key) {
  return (
    masked.startsWith('pk_') &&
    masked.endsWith(key.slice(-4)) &&
    masked !== key &&
    !masked.includes(key.slice(3, -4))
  );
}

// ----- the scenario -----

const timer = setTimeout(() => {
  console.log(`FAIL - the whole run took longer than ${WHOLE_RUN_MS / 1000} s`);
  process.exit(1);
}, WHOLE_RUN_MS);
timer.unref();

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
} catch (e) {
  await failAndExit(`launch ${CHROMIUM}`, e);
}
ok(`chromium ${browser.version()} launched`);

// Anonymous: the login page, a wrong password, and logins without the form's csrf.
const anon = await newSession('anonymous');
await step('the login page has Username, Password, Sign in and a csrf input', anon.page, async () => {
  await openOk(anon.page, '/licensing/login');
  await anon.page.getByLabel('Username', { exact: true }).waitFor();
  await anon.page.getByLabel('Password', { exact: true }).waitFor();
  await anon.page.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
  await checkCsrfInputs(anon.page);
  check((await anon.page.locator('form input[type="hidden"][name="csrf"]').count()) >= 1, 'the login form has no csrf input');
});

await step('a wrong password is refused with "Invalid username or password"', anon.page, async () => {
  await anon.page.getByLabel('Username', { exact: true }).fill(USERS.support.name);
  await anon.page.getByLabel('Password', { exact: true }).fill(`${USERS.support.password}-wrong`);
  await clickAndLoad(anon.page, anon.page.getByRole('button', { name: 'Sign in', exact: true }));
  await anon.page.getByText('Invalid username or password').waitFor();
  check(!isListPath(anon.page.url()), 'a wrong password landed on the license list');
  check((await anon.page.locator('#whoami').count()) === 0, 'a wrong password shows #whoami');
});

await step('a login POST without or with a wrong csrf is refused with 403', anon.page, async () => {
  const user = USERS.support;
  const statuses = [];
  for (const form of [
    { username: user.name, password: user.password },
    { username: user.name, password: user.password, csrf: 'not-the-token' },
  ]) {
    const response = await anon.context.request.post(`${CP_URL}/licensing/login`, {
      form,
      maxRedirects: 0,
      failOnStatusCode: false,
      timeout: ACTION_TIMEOUT_MS,
    });
    statuses.push(response.status());
  }
  check(statuses.every((s) => s === 403), `the login POSTs answered ${statuses.join(', ')}, not 403`);
  await open(anon.page, '/licensing');
  check((await anon.page.locator('#whoami').count()) === 0, 'after the refused logins a page shows #whoami: a session was created');
  return `statuses ${statuses.join(', ')}`;
});
await anon.context.close();

// Onboarding issues the licenses.
const onboarding = await newSession('onboarding');
let license; // { id, key }: the license the scenario follows
let expiring; // a second license of the customer's company, revoked with no grace
let foreign; // another company's license, which the customer must not see
await step('onboarding logs in', onboarding.page, () => login(onboarding.page, 'onboarding'));
await step('onboarding sees its nav', onboarding.page, () => checkNav(onboarding.page, 'onboarding'));
await step(`onboarding issues a license for ${ACME}`, onboarding.page, async () => {
  license = await issue(onboarding.page, ACME);
  return license.id;
});
await step('the issue page links to the license card, ISSUED, without Revoke or Reveal key', onboarding.page, async () => {
  const page = onboarding.page;
  await clickAndLoad(page, page.getByRole('link', { name: 'Open license card', exact: true }));
  onCard(page, license.id);
  const h1 = await text(page.locator('h1').first());
  check(h1.includes(license.id), `the card's h1 (${JSON.stringify(h1)}) does not hold ${license.id}`);
  await expectBadge(page, 'ISSUED');
  for (const name of ['Revoke', 'Reveal key', 'Regenerate key', 'Suspend']) {
    check((await action(page, name).count()) === 0, `onboarding is shown "${name}"`);
  }
});
await step(`onboarding issues a second license for ${ACME} and one for ${OTHER_CUSTOMER}`, onboarding.page, async () => {
  expiring = await issue(onboarding.page, ACME);
  foreign = await issue(onboarding.page, OTHER_CUSTOMER);
  return `${expiring.id}, ${foreign.id}`;
});
await step('the license list shows the three licenses, ISSUED', onboarding.page, async () => {
  const page = onboarding.page;
  await clickAndLoad(page, page.locator('nav').getByRole('link', { name: 'Licenses', exact: true }));
  check(isListPath(page.url()), `the "Licenses" link leads to ${page.url()}`);
  for (const [l, customer] of [[license, ACME], [expiring, ACME], [foreign, OTHER_CUSTOMER]]) {
    const row = page.locator(`table#licenses tr[data-license-id="${l.id}"]`);
    check((await row.count()) === 1, `no row for ${l.id} in table#licenses`);
    const link = row.getByRole('link', { name: l.id, exact: true });
    check((await link.getAttribute('href'))?.endsWith(cardPath(l.id)), `the row's link does not lead to ${cardPath(l.id)}`);
    const rowText = await text(row);
    check(rowText.includes(customer), `the row of ${l.id} does not show ${customer}: ${rowText}`);
    const shown = (await text(row.locator('span.badge').first())).toUpperCase();
    check(shown === 'ISSUED', `the row of ${l.id} shows the badge ${shown}, not ISSUED`);
  }
});
await step('onboarding signs out', onboarding.page, async () => {
  const page = onboarding.page;
  await clickAndLoad(page, page.getByRole('button', { name: 'Sign out', exact: true }));
  await open(page, '/licensing');
  check((await page.locator('#whoami').count()) === 0, 'after signing out the list still shows #whoami');
});
await onboarding.context.close();

// Support: reveal, copy, revoke.
const support = await newSession('support');
await step('support logs in', support.page, () => login(support.page, 'support'));
await step('support sees its nav, without Signing Keys, Settings, Audit Log', support.page, () => checkNav(support.page, 'support'));
await step('support sees the card with the key masked to its last 4 characters', support.page, async () => {
  const page = support.page;
  await openOk(page, cardPath(license.id));
  await checkCsrfInputs(page);
  const masked = await text(page.locator('#license-key'));
  check(maskedOk(masked, license.key), `#license-key shows ${JSON.stringify(masked)}, not a pk_ mask ending in ${license.key.slice(-4)}`);
  for (const field of ['#installed-version', '#last-heartbeat', '#fingerprint', '#device', '#lease-end']) {
    check((await page.locator(field).count()) === 1, `the card has no ${field}`);
  }
  return masked;
});
await step('support reveals the key: the one onboarding was shown', support.page, async () => {
  const page = support.page;
  await clickAndLoad(page, page.getByRole('button', { name: 'Reveal key', exact: true }));
  const shown = await text(page.locator('#license-key'));
  check(shown.startsWith('pk_'), `after "Reveal key" #license-key shows ${JSON.stringify(shown)}`);
  check(shown === license.key, 'the revealed key is not the key the license was issued with');
});
await step('support copies the key to the clipboard', support.page, async () => {
  const page = support.page;
  await page.getByRole('button', { name: 'Copy key', exact: true }).click();
  await page.getByRole('button', { name: 'Copied', exact: true }).waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  check(copied === license.key, `the clipboard holds ${JSON.stringify(copied.slice(0, 80))}, not the key`);
});
await step('support revokes with 3 days of grace: GRACE, grace ends in 3 days', support.page, async () => {
  const page = support.page;
  await confirmAction(page, license.id, 'Revoke', 'Confirm revoke', () =>
    page.getByLabel('Grace days', { exact: true }).fill('3'),
  );
  onCard(page, license.id);
  const message = await flash(page);
  await expectBadge(page, 'GRACE');
  const ends = await text(page.locator('#grace-expires'));
  check(/\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC/.test(ends), `#grace-expires (${JSON.stringify(ends)}) is not YYYY-MM-DD HH:MM UTC`);
  const expected = datesAround(3);
  check(expected.some((d) => ends.includes(d)), `#grace-expires (${JSON.stringify(ends)}) is not 3 days from now (${expected[1]})`);
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'license-card.png'), fullPage: true });
  return `flash ${JSON.stringify(message)}; grace ends ${ends}`;
});
await step('support revokes the second license with no grace: EXPIRED', support.page, async () => {
  const page = support.page;
  await confirmAction(page, expiring.id, 'Revoke', 'Confirm revoke', () =>
    page.getByLabel('Grace days', { exact: true }).fill('0'),
  );
  onCard(page, expiring.id);
  await flash(page);
  await expectBadge(page, 'EXPIRED');
});
await step('the list filters by status and customer', support.page, async () => {
  const page = support.page;
  await openOk(page, '/licensing');
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'license-list.png'), fullPage: true });
  const status = page.getByLabel('Status', { exact: true });
  const options = await status.locator('option').evaluateAll((os) => os.map((o) => ({ value: o.value, label: o.textContent.trim() })));
  const grace = options.find((o) => /^grace$/i.test(o.value) || /^grace$/i.test(o.label));
  check(grace, `the Status select has no grace option: ${JSON.stringify(options)}`);
  await status.selectOption(grace.value);
  await page.getByLabel('Customer', { exact: true }).fill(ACME);
  await clickAndLoad(page, page.getByRole('button', { name: 'Filter', exact: true }));
  const ids = await page.locator('table#licenses tr[data-license-id]').evaluateAll((rows) => rows.map((r) => r.dataset.licenseId));
  check(ids.includes(license.id), `filtered on grace and ${ACME}, the list lacks ${license.id}: ${ids}`);
  check(!ids.includes(expiring.id) && !ids.includes(foreign.id), `filtered on grace and ${ACME}, the list shows ${ids}`);
  return `${ids.length} row(s)`;
});

// The customer: only its own licenses, the banners, never a key.
const customer = await newSession('customer');
await step('the customer logs in', customer.page, () => login(customer.page, 'customer'));
await step('the customer sees only Licenses in its nav', customer.page, () => checkNav(customer.page, 'customer'));
await step(`the customer's list shows only ${ACME}'s licenses and no key`, customer.page, async () => {
  const page = customer.page;
  const rows = page.locator('table#licenses tr[data-license-id]');
  const ids = await rows.evaluateAll((rs) => rs.map((r) => r.dataset.licenseId));
  check(ids.includes(license.id) && ids.includes(expiring.id), `the customer's list lacks its licenses: ${ids}`);
  check(!ids.includes(foreign.id), `the customer's list shows ${OTHER_CUSTOMER}'s license ${foreign.id}`);
  for (let i = 0; i < (await rows.count()); i++) {
    const rowText = await text(rows.nth(i));
    check(rowText.includes(ACME), `a row of the customer's list is not ${ACME}'s: ${rowText}`);
  }
  check((await page.locator('#license-key').count()) === 0, 'the customer\'s list has a #license-key');
});
await step('the customer sees the grace banner with the stop date, and no key', customer.page, async () => {
  const page = customer.page;
  await openOk(page, cardPath(license.id));
  const banner = await text(page.locator('.banner.banner-grace'));
  const match = /License in grace period\. Service will stop on (\d{4}-\d{2}-\d{2})[^.]*\. Contact your administrator\./.exec(banner);
  check(match, `the grace banner says ${JSON.stringify(banner)}`);
  check(datesAround(3).includes(match[1]), `the grace banner's date ${match[1]} is not 3 days from now`);
  check((await page.locator('#license-key').count()) === 0, 'the customer\'s card has a #license-key');
  for (const name of ['Reveal key', 'Revoke', 'Reinstate', 'Regenerate key', 'Rebind', 'Suspend']) {
    check((await action(page, name).count()) === 0, `the customer is shown "${name}"`);
  }
  check(!(await page.locator('body').innerText()).includes(license.key), 'the customer\'s card shows the license key');
  return banner;
});
await step('the customer sees the expired banner', customer.page, async () => {
  const page = customer.page;
  await openOk(page, cardPath(expiring.id));
  const banner = await text(page.locator('.banner.banner-expired'));
  check(
    banner.includes('License expired. Contact your administrator to restore service.'),
    `the expired banner says ${JSON.stringify(banner)}`,
  );
  check((await page.locator('#license-key').count()) === 0, 'the customer\'s card has a #license-key');
});
await step(`the customer cannot open ${OTHER_CUSTOMER}'s card`, customer.page, async () => {
  const status = await open(customer.page, cardPath(foreign.id));
  check(status >= 400 && status < 500, `GET ${cardPath(foreign.id)} answered ${status} to the customer`);
  return `status ${status}`;
});
await customer.context.close();

// Support again: reinstate, CSRF, regenerate, rebind, suspend and restore, no signing keys.
await step('support reinstates: ISSUED (it was never activated)', support.page, async () => {
  const page = support.page;
  await confirmAction(page, license.id, 'Reinstate', 'Confirm reinstate');
  onCard(page, license.id);
  const message = await flash(page);
  await expectBadge(page, 'ISSUED');
  check((await page.locator('#grace-expires').count()) === 0, 'the reinstated card still shows #grace-expires');
  return `flash ${JSON.stringify(message)}`;
});
await step('a revoke POST without or with a wrong csrf is refused with 403, the license unchanged', support.page, async () => {
  const page = support.page;
  const statuses = [];
  for (const form of [{ grace_days: '3' }, { grace_days: '3', csrf: 'not-the-token' }]) {
    const response = await support.context.request.post(`${CP_URL}/licensing/licenses/${license.id}/revoke`, {
      form,
      maxRedirects: 0,
      failOnStatusCode: false,
      timeout: ACTION_TIMEOUT_MS,
    });
    statuses.push(response.status());
  }
  check(statuses.every((s) => s === 403), `the revoke POSTs answered ${statuses.join(', ')}, not 403`);
  await openOk(page, cardPath(license.id));
  await expectBadge(page, 'ISSUED');
  return `statuses ${statuses.join(', ')}`;
});
await step('support regenerates the key: a new key, shown once', support.page, async () => {
  const page = support.page;
  await confirmAction(page, license.id, 'Regenerate key', 'Confirm regenerate');
  const fresh = await text(page.locator('code#new-license-key'));
  check(/^pk_\S{8,}$/.test(fresh), `code#new-license-key shows ${JSON.stringify(fresh)}, not a pk_ key`);
  check(fresh !== license.key, 'the regenerated key is the old key');
  license.oldKey = license.key;
  license.key = fresh;
});
await step('after regenerating, the card shows only the new key masked', support.page, async () => {
  const page = support.page;
  await openOk(page, cardPath(license.id));
  const masked = await text(page.locator('#license-key'));
  check(maskedOk(masked, license.key), `#license-key shows ${JSON.stringify(masked)}, not a pk_ mask ending in ${license.key.slice(-4)}`);
  const body = await page.locator('body').innerText();
  check(!body.includes(license.key) && !body.includes(license.oldKey), 'the card shows a full key without "Reveal key"');
  return masked;
});
await step('support rebinds to whichever box activates next', support.page, async () => {
  const page = support.page;
  await confirmAction(page, license.id, 'Rebind', 'Confirm rebind', async () => {
    const body = await page.locator('body').innerText();
    check(/whichever box activates next/i.test(body), 'the rebind confirmation does not say "whichever box activates next"');
  });
  onCard(page, license.id);
  return `flash ${JSON.stringify(await flash(page))}`;
});
await step('support suspends and restores', support.page, async () => {
  const page = support.page;
  await confirmAction(page, license.id, 'Suspend', 'Confirm suspend');
  onCard(page, license.id);
  await flash(page);
  await expectBadge(page, 'SUSPENDED');
  await confirmAction(page, license.id, 'Restore', 'Confirm restore');
  onCard(page, license.id);
  await flash(page);
  await expectBadge(page, 'ISSUED');
});
await step('support gets 403 on the signing keys page', support.page, async () => {
  const page = support.page;
  check((await page.locator('nav').getByRole('link', { name: 'Signing Keys', exact: true }).count()) === 0, 'support\'s nav shows "Signing Keys"');
  const status = await open(page, '/licensing/signing');
  check(status === 403, `GET /licensing/signing answered ${status} to support, not 403`);
  check((await page.locator('table#signing-keys').count()) === 0, 'support is shown table#signing-keys');
});
await support.context.close();

// The super_admin: everything, and the signing keys.
const admin = await newSession('super_admin');
await step('super_admin logs in', admin.page, () => login(admin.page, 'super_admin'));
await step('super_admin sees the whole nav', admin.page, () => checkNav(admin.page, 'super_admin'));
await step('super_admin sees every customer\'s licenses', admin.page, async () => {
  const ids = await admin.page.locator('table#licenses tr[data-license-id]').evaluateAll((rs) => rs.map((r) => r.dataset.licenseId));
  for (const l of [license, expiring, foreign]) check(ids.includes(l.id), `the list lacks ${l.id}: ${ids}`);
});
await step('super_admin sees the signing keys table', admin.page, async () => {
  const page = admin.page;
  await clickAndLoad(page, page.locator('nav').getByRole('link', { name: 'Signing Keys', exact: true }));
  const path = new URL(page.url()).pathname;
  check(path === '/licensing/signing', `the "Signing Keys" link leads to ${path}`);
  await checkCsrfInputs(page);
  const rows = await page.locator('table#signing-keys tbody tr').count();
  check(rows >= 1, 'table#signing-keys has no rows (init creates a signing key)');
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'signing-keys.png'), fullPage: true });
  return `${rows} key(s)`;
});
await admin.context.close();

await browser.close();
console.log(`# all ${passed} steps passed`);
clearTimeout(timer);

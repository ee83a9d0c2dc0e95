'use strict';

// The observe listener as an operator meets it: the status page in a real
// headless Chromium (the Debian package, driven by puppeteer-core), and
// /metrics beside runtime.stats().

const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { describe, it } = require('node:test');

const { startRuntime } = require('..');
const { fixture, writeConfig } = require('./helpers');

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((file) => fs.existsSync(file));
const ECHO = 'acs:fc:::service:Test:function:echo';
const THROWS = 'acs:fc:::service:Test:function:throws';

async function withRuntime(config, use) {
  const runtime = await startRuntime(writeConfig(config));
  try {
    return await use(runtime);
  } finally {
    await runtime.stop();
  }
}

async function withPage(viewport, use) {
  const puppeteer = require('puppeteer-core');
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in a container has no user namespaces for Chromium's sandbox.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport(viewport);
    const problems = [];
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warn') problems.push(`console ${message.type()}: ${message.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
    return await use(page, problems);
  } finally {
    await browser.close();
  }
}

/** The text of a cell of function `functionId`'s row. */
function cell(page, functionId, field) {
  return page.$eval(`#functions tr[data-key="${functionId}"] td[data-field="${field}"]`, (node) => node.textContent);
}

describe('the status page', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, () => {
  it('loads without errors, shows the config\'s functions, and its numbers follow the calls', async () => {
    const config = {
      observe: { listen: '127.0.0.1:0' },
      functions: [fixture('echo'), fixture('throws')],
      routes: [{ source: 'any', topicFilter: '/status/#', target: `function:${ECHO}` }],
    };
    await withRuntime(config, async (runtime) => {
      assert.match(runtime.observeUrl, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      await withPage({ width: 1280, height: 900 }, async (page, problems) => {
        await page.goto(runtime.observeUrl, { waitUntil: 'load' });
        await page.waitForSelector(`#functions tr[data-key="${ECHO}"]`);
        const shown = await page.$$eval('#functions tbody tr', (rows) => rows.map((row) => row.dataset.key));
        assert.deepEqual(shown, [ECHO, THROWS]);
        assert.equal(await cell(page, ECHO, 'invocations'), '0');
        assert.match(await page.$eval('#routes tbody', (node) => node.textContent), /\/status\/#/);

        const client = runtime.client();
        for (let i = 0; i < 5; i += 1) await client.invokeFunction({ functionId: ECHO, payload: `call ${i}` });
        const failed = await client.invokeFunction({ functionId: THROWS, payload: 'x' });
        assert.equal(failed.functionError, 'Unhandled');
        // The page polls every 2 s: wait for it to show what was done.
        // Both at once: a poll between the last echo call and the throwing one shows only the first.
        await page.waitForFunction(
          (echo, throws) => {
            const shown = (fn, field) => document.querySelector(`#functions tr[data-key="${fn}"] td[data-field="${field}"]`)?.textContent;
            return shown(echo, 'invocations') === '5' && shown(throws, 'errors') === '1';
          },
          { timeout: 10000 },
          ECHO,
          THROWS,
        );
        assert.equal(await cell(page, THROWS, 'errors'), '1');
        assert.match(await cell(page, ECHO, 'worker'), /^pid \d+ · [\d.]+ MiB · up \d/);
        assert.notEqual(await cell(page, ECHO, 'p50'), '–');
        const errors = await page.$$eval('#errors tbody tr', (rows) => rows.map((row) => row.textContent));
        assert.equal(errors.length, 1);
        assert.match(errors[0], /unhandled_error/);
        assert.doesNotMatch(errors[0], /call \d/, 'no payload on the page');
        if (process.env.EDGEFC_SCREENSHOT) {
          await page.screenshot({ path: process.env.EDGEFC_SCREENSHOT, fullPage: true });
        }
        assert.deepEqual(problems, []);
      });
    });
  });

  it('fits a phone-sized screen', async () => {
    await withRuntime({ observe: { listen: '127.0.0.1:0' }, functions: [fixture('echo')] }, async (runtime) => {
      await withPage({ width: 390, height: 844, isMobile: true, deviceScaleFactor: 2 }, async (page, problems) => {
        await page.goto(runtime.observeUrl, { waitUntil: 'load' });
        await page.waitForSelector(`#functions tr[data-key="${ECHO}"]`);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`);
        // Each row is a card whose cells name themselves.
        const label = await page.$eval(`#functions tr[data-key="${ECHO}"] td[data-field="invocations"]`, (node) => getComputedStyle(node, '::before').content);
        assert.equal(label, '"invocations: "');
        assert.deepEqual(problems, []);
      });
    });
  });

  it('asks for the token off loopback, and works with it in the URL fragment', async () => {
    await withRuntime({ observe: { listen: '0.0.0.0:0' }, functions: [fixture('echo')] }, async (runtime) => {
      const port = new URL(runtime.observeUrl).port;
      const token = fs.readFileSync(path.join(path.dirname(runtime.socketPath), 'observe.token'), 'utf8').trim();
      await withPage({ width: 1280, height: 900 }, async (page) => {
        await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: 'load' });
        await page.waitForSelector('#problem:not([hidden])');
        assert.match(await page.$eval('#problem', (node) => node.textContent), /needs a token/);
        await page.goto(`http://127.0.0.1:${port}/#token=${token}`, { waitUntil: 'load' });
        await page.reload({ waitUntil: 'load' });
        await page.waitForSelector(`#functions tr[data-key="${ECHO}"]`);
      });
    });
  });
});

describe('/metrics', () => {
  it('reads the numbers runtime.stats() reads', async () => {
    await withRuntime({ observe: { listen: '127.0.0.1:0' }, functions: [fixture('echo')] }, async (runtime) => {
      const client = runtime.client();
      for (let i = 0; i < 3; i += 1) await client.invokeFunction({ functionId: ECHO, payload: 'x' });
      const response = await fetch(new URL('/metrics', runtime.observeUrl));
      assert.equal(response.status, 200);
      const text = await response.text();
      const stats = await runtime.stats();
      const echo = stats.functions.find((fn) => fn.function === ECHO);
      assert.equal(echo.invocations.sync.ok, 3);
      assert.match(text, new RegExp(`^edgefc_invocations_total\\{function="${ECHO}",type="sync",outcome="ok"\\} 3$`, 'm'));
      assert.match(text, new RegExp(`^edgefc_invocation_run_seconds_count\\{function="${ECHO}"\\} ${echo.runTime.count}$`, 'm'));
      assert.match(text, /^# EOF$/m);
    });
  });
});

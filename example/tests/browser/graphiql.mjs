// Opens the GraphiQL page, runs a createShoppingList mutation through it, waits until the page
// shows the created list, and saves a screenshot.
//   node graphiql.mjs BASE_URL LIST_NAME SCREENSHOT_PATH
// Exits 0 when the page showed the result; prints what it saw either way.
import { chromium } from 'playwright-core';

const [baseUrl, listName, screenshot] = process.argv.slice(2);
if (!baseUrl || !listName || !screenshot) {
  console.error('usage: node graphiql.mjs BASE_URL LIST_NAME SCREENSHOT_PATH');
  process.exit(2);
}

// Playwright gives the browser a fresh profile of its own. The flags keep Chromium off the
// network it would otherwise call home to.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let status = 1;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (error) => console.error('page error:', error.message));
  const query = `mutation { createShoppingList(name: "${listName}") { id name version } }`;
  await page.goto(`${baseUrl}/graphiql?query=${encodeURIComponent(query)}`);
  await page.locator('.graphiql-execute-button').click();
  // The result pane shows the response JSON once the mutation has run.
  await page.waitForFunction(
    (name) => [...document.querySelectorAll('.result-window')].some((el) => el.innerText.includes(name)),
    listName,
    { timeout: 20000 },
  );
  const result = await page.locator('.result-window').innerText();
  console.log(result);
  await page.screenshot({ path: screenshot });
  status = 0;
} catch (error) {
  console.error('GraphiQL did not show the result:', error.message);
} finally {
  await browser.close();
}
process.exit(status);

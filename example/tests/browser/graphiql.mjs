// Opens the GraphiQL page in headless Chromium, checks that it loaded the schema, runs a
// createShoppingList mutation through the page, waits until the result pane shows the created
// list, and saves a screenshot.
//   node graphiql.mjs BASE_URL LIST_NAME SCREENSHOT_PATH
// Prints the result pane's text on stdout. Exits 0 only when the page showed the result; on
// failure it still saves the screenshot, to see why.
import { chromium } from 'playwright-core';

const [baseUrl, listName, screenshot] = process.argv.slice(2);
if (!baseUrl || !listName || !screenshot) {
  console.error('usage: node graphiql.mjs BASE_URL LIST_NAME SCREENSHOT_PATH');
  process.exit(2);
}

// Playwright starts the browser with a fresh, empty profile (--user-data-dir) of its own. The
// flags keep Chromium from calling home over a network this machine does not have.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let status = 1;
const problems = [];
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
try {
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  // GraphiQL loads the schema first (docs, completion): it must pass the server's limits.
  const introspection = page.waitForResponse(
    (response) => response.url().endsWith('/api') && (response.request().postData() ?? '').includes('IntrospectionQuery'),
    { timeout: 20000 },
  );
  const query = `mutation { createShoppingList(name: "${listName}") { id name version } }`;
  await page.goto(`${baseUrl}/graphiql?query=${encodeURIComponent(query)}`);
  const schema = await (await introspection).json();
  if (schema.errors || !schema.data?.__schema) {
    throw new Error(`GraphiQL could not load the schema: ${JSON.stringify(schema.errors)}`);
  }
  await page.locator('.graphiql-execute-button').click();
  // The result pane shows the response JSON once the mutation has run.
  await page.waitForFunction(
    (name) => [...document.querySelectorAll('.result-window')].some((el) => el.innerText.includes(name)),
    listName,
    { timeout: 20000 },
  );
  console.log(await page.locator('.result-window').innerText());
  if (problems.length > 0) throw new Error(problems.join('\n'));
  status = 0;
} catch (error) {
  console.error(`GraphiQL did not show the result: ${error.message}`);
  for (const problem of problems) console.error(problem);
} finally {
  await page.screenshot({ path: screenshot }).catch((error) => console.error(`no screenshot: ${error.message}`));
  await browser.close();
}
process.exit(status);

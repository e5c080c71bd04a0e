// Opens the GraphiQL page in headless Chromium, checks that it loaded the schema, runs a
// createShoppingList mutation through the page, waits until the result pane shows the created
// list, then runs a shoppingListChanged subscription through the page (its WebSocket) and
// renames the list through the API until the pane shows the change; saves a screenshot.
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
  const created = await page.locator('.result-window').innerText();
  console.log(created);
  // Then a subscription through the page (over its WebSocket), and renames through the API
  // until the page shows one: the subscription starts a moment after the click.
  const id = created.match(/"id":\s*(\d+)/)?.[1];
  if (!id) throw new Error(`no id in ${created}`);
  const subscription = `subscription { shoppingListChanged(id: ${id}) { version name } }`;
  await page.goto(`${baseUrl}/graphiql?query=${encodeURIComponent(subscription)}`);
  await page.locator('.graphiql-execute-button').click();
  let shown = null;
  for (let attempt = 0; attempt < 50 && !shown; attempt++) {
    const renamed = `${listName} renamed ${attempt}`;
    const response = await fetch(`${baseUrl}/api`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `mutation { changeShoppingListName(shoppingListId: ${id}, name: "${renamed}") { version } }` }),
    });
    if (!response.ok) throw new Error(`the rename failed: HTTP ${response.status}`);
    shown = await page.waitForFunction(
      (name) => [...document.querySelectorAll('.result-window')].some((el) => el.innerText.includes(name)),
      renamed,
      { timeout: 300 },
    ).then(() => renamed, () => null);
  }
  if (!shown) throw new Error('the subscription showed none of 50 renames');
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

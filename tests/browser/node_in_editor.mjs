// Open InvokeAI's workflow editor in Debian's chromium, load our example workflow from its file, check that our
// node renders with its model dropdown, and save a screenshot of the node.
//   node node_in_editor.mjs URL WORKFLOW.json OUT.png MODEL_CHOICES (how many models the dropdown must offer)
import { launchChromium } from './chromium.mjs';

const [url, workflowPath, outPath, choices] = process.argv.slice(2);
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1500 }, deviceScaleFactor: 1.5 });
  await page.goto(url);
  await page.getByRole('tab', { name: 'Workflows' }).or(page.getByLabel('Workflows')).first().click({ timeout: 120000 });
  await page.locator('input[type=file][accept*="json"]').first().setInputFiles(workflowPath);
  const confirm = page.getByRole('button', { name: 'Load', exact: true });
  if (await confirm.isVisible({ timeout: 3000 }).catch(() => false)) await confirm.click();
  await page.getByText('Workflow Editor', { exact: true }).click();
  const node = page.locator('.react-flow__node').filter({ hasText: 'Remove Background' }).first();
  await node.waitFor({ timeout: 60000 });
  const model = node.locator('select').filter({ hasText: 'U²-Net-p' }).first();
  const options = await model.locator('option').allInnerTexts();
  if (options.length !== Number(choices) || !options.some((o) => o.includes('NON-COMMERCIAL'))) {
    throw new Error(`model dropdown options: ${JSON.stringify(options)}`);
  }
  const selected = await model.evaluate((el) => el.options[el.selectedIndex].text);
  for (const label of ['Toggle Left Panel (T)', 'Toggle Right Panel (G)', 'Hide MiniMap']) {
    await page.getByLabel(label).first().click();
  }
  await page.getByLabel('Fit View').first().click();
  await page.waitForTimeout(1500);
  await node.screenshot({ path: outPath });
  console.log(JSON.stringify({ ok: true, options: options.length, selected }));
} finally {
  await browser.close();
}

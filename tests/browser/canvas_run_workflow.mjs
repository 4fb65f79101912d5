// "Run Workflow on Canvas" as a user does it, in Debian's chromium against a real invokeai-web: open the Canvas,
// optionally press "Fit Bbox To Layers" and "Crop Layer to Bbox", right-click the layer, run our canvas workflow,
// accept the staged cut-out, and wait until the canvas state (kept by InvokeAI on the server) has the new layer.
//   node canvas_run_workflow.mjs '{"url": ..., "layer": "source", "workflow": "Remove Background (canvas)",
//                                  "fit": true, "crop": false, "layers": 2, "before": "a.png", "after": "b.png",
//                                  "hide": true}'
import { launchChromium } from './chromium.mjs';

const job = JSON.parse(process.argv[2]);

async function canvasState() {
  const r = await fetch(`${job.url}/api/v1/client_state/default/get_by_key?key=canvas`);
  const value = await r.json();
  return value ? JSON.parse(value) : null;
}

const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1800, height: 1000 } });
  await page.goto(job.url);
  const openCanvas = async () => {
    const canvasNav = page.getByLabel('Canvas', { exact: true }).first(); // the left bar's Canvas button
    await canvasNav.waitFor({ timeout: 120000 });
    await canvasNav.click();
    await page.mouse.move(700, 900); // away from the button, so its "Canvas" tooltip goes
    await page.waitForTimeout(500);
    await page.getByText('Canvas', { exact: true }).locator('visible=true').last().click(); // the workspace's tab
    await layerRow.waitFor({ timeout: 60000 });
    await page.waitForTimeout(1500); // the layer's pixel rect is computed after its image loads
  };
  const layerRow = page.getByText(job.layer, { exact: true }).first();
  await openCanvas();
  const menu = async (item) => {
    await layerRow.click({ button: 'right' });
    await page.locator('[role=menuitem]:visible', { hasText: item }).first().click();
  };
  const until = async (done, what, again = null) => { // poll the persisted canvas state
    for (let i = 0; i < 60; i += 1) {
      if (done(await canvasState())) return;
      if (again && i % 10 === 9) await again();
      await page.waitForTimeout(500);
    }
    throw new Error(`canvas state never showed: ${what}`);
  };
  const initial = await canvasState();
  const sourceObjects = (state) => state.rasterLayers.entities.find((e) => e.name === job.layer).objects;
  if (job.fit) {
    const fit = () => page.getByLabel('Fit Bbox To Layers').first().click();
    await fit();
    await until((state) => JSON.stringify(state.bbox.rect) !== JSON.stringify(initial.bbox.rect), 'the fitted bbox',
                fit);
  }
  if (job.crop) {
    await menu('Crop Layer to Bbox');
    await until((state) => sourceObjects(state)[0].id !== sourceObjects(initial)[0].id, 'the cropped layer');
  }
  const stage = page.locator('.konvajs-content').first();
  if (job.before) {
    await page.waitForTimeout(1000);
    await stage.screenshot({ path: job.before });
  }
  await menu('Run Workflow');
  const dialog = page.getByRole('dialog');
  await dialog.locator('select').first().selectOption({ label: job.workflow });
  const execute = dialog.getByRole('button', { name: 'Execute Workflow' });
  await execute.waitFor({ timeout: 30000 });
  await page.waitForTimeout(1000); // the form with the workflow's fields loads
  await execute.click();
  const accept = page.locator('button[aria-label="Accept (Enter)"]:not([disabled])').first();
  // InvokeAI 6.14.2's staging area sometimes misses the images of a workflow that finishes within a second: the
  // item shows "Completed" with no picture and Accept stays disabled until the page is loaded again.
  let reloaded = false;
  try {
    await accept.waitFor({ timeout: 30000 });
  } catch {
    reloaded = true;
    await page.reload();
    await openCanvas();
    await accept.waitFor({ timeout: 60000 });
  }
  await page.waitForTimeout(1000);
  await accept.click();
  const deadline = Date.now() + 30000;
  let state = await canvasState();
  while (state.rasterLayers.entities.length < job.layers && Date.now() < deadline) {
    await page.waitForTimeout(500);
    state = await canvasState();
  }
  if (state.rasterLayers.entities.length < job.layers) throw new Error('the accepted layer never reached the state');
  if (job.after) {
    if (job.hide) {
      const source = page.locator('div', { has: page.getByText(job.layer, { exact: true }) })
        .filter({ has: page.getByLabel('Enabled') }).last();
      await source.getByLabel('Enabled').first().click(); // hide the source layer: the cut-out alone is left
    }
    await page.waitForTimeout(1500);
    await stage.screenshot({ path: job.after });
  }
  console.log(JSON.stringify({ ok: true, reloaded, state }));
} catch (error) {
  if (job.debug) await browser.contexts()[0]?.pages()[0]?.screenshot({ path: job.debug });
  throw error;
} finally {
  await browser.close();
}

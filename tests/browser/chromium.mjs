// Debian's chromium (never a browser downloaded by a test tool), headless, with the flags this sandbox needs.
import { chromium } from 'playwright-core';

export const launchChromium = () => chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});

#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (built by `npm install`).
import { main } from '../dist/cli/cli.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // serve and demo close their handles; anything left must not keep us alive.
  if (code !== 0) setTimeout(() => process.exit(code), 100).unref();
});

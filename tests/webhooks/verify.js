#!/usr/bin/env node
// Verifies captured webhook requests with the Standard Webhooks reference
// library for JavaScript (npm `standardwebhooks`, which nobody here wrote),
// for tests/integration/producer_webhook_test.cc.
//
// Usage: node verify.js CASES.json
// CASES.json is an array of
//   {"name": "...", "secret": "whsec_... or any text",
//    "raw": false,               // true: new Webhook(secret, {format: "raw"})
//    "headers": {"webhook-id": "...", "webhook-timestamp": "...",
//                "webhook-signature": "...", ...},
//    "body_base64": "...",       // the exact body bytes
//    "now_offset_seconds": 0}    // verify as if this much later (a replay)
// Prints one JSON line per case, in order:
//   {"name": "...", "verified": true|false, "error": "<library message>"}
// Exit status: 0 when every case was checked (whatever the verdicts), 2 on
// a usage or input error.
"use strict";

const fs = require("fs");
const path = require("path");

let Webhook;
try {
  ({ Webhook } = require(path.join(__dirname, "node_modules", "standardwebhooks")));
} catch (e) {
  console.error(`verify.js: cannot load standardwebhooks (run tools/setup): ${e.message}`);
  process.exit(2);
}

if (process.argv.length !== 3) {
  console.error("usage: node verify.js CASES.json");
  process.exit(2);
}
let cases;
try {
  cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
} catch (e) {
  console.error(`verify.js: cannot read ${process.argv[2]}: ${e.message}`);
  process.exit(2);
}

const realNow = Date.now;
for (const c of cases) {
  const offsetMs = (c.now_offset_seconds || 0) * 1000;
  Date.now = () => realNow() + offsetMs;  // the library reads the time here
  let verified = false;
  let error = "";
  try {
    const wh = c.raw ? new Webhook(c.secret, { format: "raw" }) : new Webhook(c.secret);
    wh.verify(Buffer.from(c.body_base64, "base64"), c.headers);
    verified = true;
  } catch (e) {
    error = e.message;
  } finally {
    Date.now = realNow;
  }
  console.log(JSON.stringify({ name: c.name, verified, error }));
}

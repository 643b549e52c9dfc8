// Runs Segment's @segment/analytics-node, as a merchant's backend would, against a given host.
//
// Reads one JSON document on stdin:
//   {"host": "http://127.0.0.1:8080", "writeKey": "wk", "path": "/v1/batch" (optional),
//    "closeTimeout": 20000 (optional, ms),
//    "calls": [["identify", {"userId": "u1", "traits": {}}], ["track", {...}], ...]}
// and makes each call (identify, track, page, screen, group, alias: the library's own methods,
// given their one params object), then closeAndFlush(). The library keeps its DEFAULT batching
// (flushAt 15, flushInterval 10 s): the calls leave in the batches it chooses.
//
// Prints one JSON document on stdout: {"version", "requests": [{url, method, headers, body}],
// "responses": [{url, status}], "errors": [message]}. Exits 1 when the library reported any error
// (a failed delivery, a rejected call), 2 on bad input.
import { Analytics } from "@segment/analytics-node";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const METHODS = new Set(["identify", "track", "page", "screen", "group", "alias"]);

function fail(message) {
  process.stderr.write(`analytics_node.mjs: ${message}\n`);
  process.exit(2);
}

let input;
try {
  input = JSON.parse(readFileSync(0, "utf8"));
} catch (error) {
  fail(`stdin is not JSON: ${error.message}`);
}
if (typeof input.host !== "string" || typeof input.writeKey !== "string") {
  fail("host and writeKey are required strings");
}
if (!Array.isArray(input.calls)) fail("calls must be a list of [method, params]");
for (const call of input.calls) {
  if (!Array.isArray(call) || !METHODS.has(call[0]) || typeof call[1] !== "object") {
    fail(`not a call: ${JSON.stringify(call)}`);
  }
}

const version = createRequire(import.meta.url)("@segment/analytics-node/package.json").version;
const requests = [];
const responses = [];
const errors = [];

function describe(error) {
  const reason = error?.reason ?? error;
  const text = reason instanceof Error ? reason.message : JSON.stringify(reason);
  return error?.code ? `${error.code}: ${text}` : String(text);
}

const settings = { writeKey: input.writeKey, host: input.host };
if (input.path !== undefined) settings.path = input.path;
const analytics = new Analytics(settings);
analytics.on("http_request", (r) =>
  requests.push({ url: r.url, method: r.method, headers: r.headers, body: JSON.parse(r.body) }),
);
analytics.on("http_response", (r) => responses.push({ url: r.url, status: r.status }));
// Each call the library accepts ends in the event of its type (delivered) or in "error".
let accepted = 0;
let settled = 0;
for (const method of METHODS) analytics.on(method, () => settled++);
analytics.on("error", (error) => {
  settled++;
  errors.push(describe(error));
});

for (const [method, params] of input.calls) {
  try {
    analytics[method](params);
    accepted++;
  } catch (error) {
    errors.push(`${method}: ${describe(error)}`); // refused by the library's validation
  }
}

try {
  await analytics.closeAndFlush(input.closeTimeout ? { timeout: input.closeTimeout } : undefined);
} catch (error) {
  errors.push(`closeAndFlush: ${describe(error)}`);
}
// closeAndFlush returns at its timeout without waiting for aborted batches to report.
for (let waited = 0; settled < accepted && waited < 1000; waited += 20) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}
if (settled < accepted) {
  errors.push(`${accepted - settled} of ${accepted} calls were neither delivered nor failed`);
}

process.stdout.write(JSON.stringify({ version, requests, responses, errors }) + "\n");
for (const error of errors) process.stderr.write(`analytics-node reported: ${error}\n`);
process.exit(errors.length ? 1 : 0);

// The compatibility suite's function for Node's runtime interface client
// (aws-lambda-ric); the same behaviour as app.py. Routes by rawPath under the
// shim's HTTP events, by field for raw events (shim invoke).
"use strict";

if (process.env.CLIENT_FAIL_INIT) {
  throw new Error("cannot start: CLIENT_FAIL_INIT is set");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

exports.handler = async (event, context) => {
  const path = event.rawPath;
  if (path === undefined) {
    if (event.fail) throw new Error("failed on purpose");
    await sleep(event.sleep_ms || 0);
    return { event };
  }
  if (path === "/fail") throw new Error("failed on purpose");
  if (path === "/crash") process.exit(1);
  if (path === "/hang") await sleep(3600 * 1000);
  if (path.startsWith("/sleep/")) await sleep(Number(path.split("/")[2]));
  if (path === "/binary") {
    return {
      statusCode: 200,
      headers: { "content-type": "application/octet-stream" },
      isBase64Encoded: true,
      body: Buffer.from([0, 1, 2, 255, 254]).toString("base64"),
    };
  }
  const b64 = Boolean(event.isBase64Encoded);
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    cookies: ["client=1"],
    body: JSON.stringify({
      path,
      query: event.queryStringParameters ?? null,
      body: b64 ? null : event.body ?? null,
      body_b64: b64 ? event.body : null,
      request_id: context.awsRequestId,
      remaining_ms: context.getRemainingTimeInMillis(),
      function: context.functionName,
      memory: String(context.memoryLimitInMB),
      arn: context.invokedFunctionArn,
    }),
  };
};

# The compatibility suite's function for Python's runtime interface client
# (awslambdaric); the same behaviour as app.js. Routes by rawPath under the
# shim's HTTP events, by field for raw events (shim invoke).
import base64, json, os, time

if os.environ.get("CLIENT_FAIL_INIT"):
    raise RuntimeError("cannot start: CLIENT_FAIL_INIT is set")


def handler(event, context):
    path = event.get("rawPath")
    if path is None:  # a raw event
        if event.get("fail"):
            raise ValueError("failed on purpose")
        time.sleep(event.get("sleep_ms", 0) / 1000)
        return {"event": event}
    if path == "/fail":
        raise ValueError("failed on purpose")
    if path == "/crash":
        os._exit(1)
    if path == "/hang":
        time.sleep(3600)
    if path.startswith("/sleep/"):
        time.sleep(int(path.split("/")[2]) / 1000)
    if path == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "isBase64Encoded": True, "body": base64.b64encode(bytes([0, 1, 2, 255, 254])).decode()}
    body = event.get("body")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "cookies": ["client=1"],
        "body": json.dumps({
            "path": path,
            "query": event.get("queryStringParameters"),
            "body": None if event.get("isBase64Encoded") else body,
            "body_b64": body if event.get("isBase64Encoded") else None,
            "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "function": context.function_name,
            "memory": str(context.memory_limit_in_mb),
            "arn": context.invoked_function_arn,
        }),
    }

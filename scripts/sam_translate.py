"""The SAM transform, offline (aws-sam-translator, as `sam deploy` runs it
in CloudFormation), over template.yaml with every CodeUri as an S3 URI (as
`sam package` makes it), and what the transformed template must hold:

* no function's environment sets AWS_LAMBDA_MAX_CONCURRENCY (Lambda alone
  decides; the shim sets it on k3s);
* DATABASE_URL only in functions that use the database;
* every function logs JSON into the stack's log group, with reserved
  concurrency;
* every schedule retries, has a dead-letter queue, and passes the
  scheduled time in its event;
* the HTTP API's stage is throttled; the Redis rule is present.

Run by scripts/k3s-check.sh with the sam venv's Python.
"""

import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

NO_DATABASE = {"ApiHealth", "Web", "ApiDocs"}


class NoManagedPolicies:
    def load(self):
        return {}


def main(path):
    t = yaml_parse(open(path).read())
    for r in t["Resources"].values():
        if r.get("Type") == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = "s3://bucket/code.zip"
    out = transform(t, {}, NoManagedPolicies())
    res = out["Resources"]
    problems = []
    functions = {k: r["Properties"] for k, r in res.items() if r["Type"] == "AWS::Lambda::Function"}
    for name, p in functions.items():
        env = p.get("Environment", {}).get("Variables", {})
        if "AWS_LAMBDA_MAX_CONCURRENCY" in env:
            problems.append(f"{name}: sets AWS_LAMBDA_MAX_CONCURRENCY")
        if ("DATABASE_URL" in env) == (name in NO_DATABASE):
            problems.append(f"{name}: DATABASE_URL {'given' if name in NO_DATABASE else 'missing'}")
        log = p.get("LoggingConfig", {})
        if log.get("LogFormat") != "JSON" or log.get("LogGroup") != {"Ref": "FunctionLogs"}:
            problems.append(f"{name}: LoggingConfig {log}")
        if "ReservedConcurrentExecutions" not in p:
            problems.append(f"{name}: no reserved concurrency")
    schedules = [r["Properties"] for r in res.values() if r["Type"] == "AWS::Scheduler::Schedule"]
    if len(schedules) < 7:
        problems.append(f"only {len(schedules)} schedules")
    for s in schedules:
        target = s["Target"]
        if "RetryPolicy" not in target or "DeadLetterConfig" not in target:
            problems.append(f"schedule {s.get('ScheduleExpression')}: no retries or dead letters")
        if "<aws.scheduler.scheduled-time>" not in target.get("Input", ""):
            problems.append(f"schedule {s.get('ScheduleExpression')}: the event lacks the scheduled time")
    stages = [r["Properties"] for r in res.values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    if not all("ThrottlingRateLimit" in s.get("DefaultRouteSettings", {}) for s in stages):
        problems.append("the HTTP API stage is not throttled")
    if "RedisRequired" not in out.get("Rules", {}):
        problems.append("the RedisRequired rule is missing")
    alarms = sum(1 for r in res.values() if r["Type"] == "AWS::CloudWatch::Alarm")
    for p in problems:
        print(p)
    print(f"transformed: {len(functions)} functions, {len(schedules)} schedules, {alarms} alarms, "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))

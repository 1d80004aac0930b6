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

With `--env-out FILE [--param Name=Value ...]` it writes, instead of
checking, the environment Lambda gives every function of the transformed
template: its variables with the intrinsics resolved against those
parameter values (the template's defaults otherwise; `AWS::NoValue` drops a
variable), plus what Lambda itself adds for `LoggingConfig`
(AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL), keyed by the function's
binary. shared/e2e/tests/aws.rs runs every binary with exactly that.
"""

import json
import re
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

NO_DATABASE = {"ApiHealth", "Web", "ApiDocs"}


class NoManagedPolicies:
    def load(self):
        return {}


PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::StackName": "honeydue",
          "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


class Resolver:
    """The intrinsics a transformed function's environment may hold."""

    def __init__(self, template, params):
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.params.update(params)
        self.params.update(PSEUDO)
        self.conditions = template.get("Conditions", {})

    def cond(self, c):
        if isinstance(c, str):
            return self.cond(self.conditions[c])
        (k, a), = c.items()
        if k == "Condition":
            return self.cond(self.conditions[a])
        if k == "Fn::Not":
            return not self.cond(a[0])
        if k == "Fn::Equals":
            return self.value(a[0]) == self.value(a[1])
        if k == "Fn::And":
            return all(self.cond(x) for x in a)
        if k == "Fn::Or":
            return any(self.cond(x) for x in a)
        raise ValueError(f"unsupported condition {k}")

    def value(self, v):
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (str, int, float)):
            return str(v)
        (k, a), = v.items()
        if k == "Ref":
            if a == "AWS::NoValue":
                return None
            if a not in self.params:
                raise ValueError(f"{a} is a resource: its physical id exists only on AWS")
            return self.params[a]
        if k == "Fn::If":
            return self.value(a[1] if self.cond(a[0]) else a[2])
        if k == "Fn::Sub" and isinstance(a, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: self.params[m.group(1)], a)
        raise ValueError(f"unsupported intrinsic {k} in a function environment")


def environments(template, out, params, out_path):
    r = Resolver(template, params)
    result = {}
    for name, res in out["Resources"].items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        p = res["Properties"]
        env = {}
        for k, v in p.get("Environment", {}).get("Variables", {}).items():
            v = r.value(v)
            if v is not None:
                env[k] = v
        log = p.get("LoggingConfig", {})
        if log.get("LogFormat") == "JSON":
            env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
            if "ApplicationLogLevel" in log:
                env["AWS_LAMBDA_LOG_LEVEL"] = r.value(log["ApplicationLogLevel"])
        meta = template["Resources"][name].get("Metadata", {})
        result[meta.get("BuildProperties", {}).get("Binary", name)] = env
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    return 0


def main(path, env_out=None, params=None):
    t = yaml_parse(open(path).read())
    for r in t["Resources"].values():
        if r.get("Type") == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = "s3://bucket/code.zip"
    out = transform(t, {}, NoManagedPolicies())
    if env_out:
        return environments(yaml_parse(open(path).read()), out, params or {}, env_out)
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
    args, path, env_out, params = sys.argv[1:], "template.yaml", None, {}
    while args:
        a = args.pop(0)
        if a == "--env-out":
            env_out = args.pop(0)
        elif a == "--param":
            k, _, v = args.pop(0).partition("=")
            params[k] = v
        else:
            path = a
    sys.exit(main(path, env_out, params))

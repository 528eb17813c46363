"""AWS's documented rules that a template must follow to work in a real account, as checks over a synthesized
CloudFormation template. Each rule names the page it comes from; each returns its violations (empty: it holds).

These are the places where moto and the local run are more lenient than AWS, so only a check on the template
can catch them (tests/infra/test_aws_rules.py runs every rule on every template, and shows each one failing on a
copy of the template with its defect put back).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus


@dataclass(frozen=True)
class Rule:
    name: str
    says: str  # the rule, in AWS's words or close to them
    source: str  # the guide and page
    check: Callable[[dict], list[str]]


RULES: dict[str, Rule] = {}


def rule(name: str, says: str, source: str):
    def register(check):
        RULES[name] = Rule(name, says, source, check)
        return check
    return register


def resources(template: dict, kind: str | None = None) -> dict[str, dict]:
    found = template.get("Resources", {})
    return {k: v for k, v in found.items() if kind is None or v["Type"] == kind}


def props(resource: dict) -> dict:
    return resource.get("Properties", {})


def role_statements(template: dict, role: str) -> list[dict]:
    """Every statement of the IAM policies attached to a role (its logical id)."""
    return [s for p in resources(template, "AWS::IAM::Policy").values() if {"Ref": role} in props(p).get("Roles", [])
            for s in props(p)["PolicyDocument"]["Statement"]]


def as_list(value) -> list:
    """A policy statement's Action or Resource, which IAM allows as one value or a list."""
    return value if isinstance(value, list) else [value]


def actions(statements: list[dict], prefix: str = "") -> set[str]:
    return {a for s in statements for a in as_list(s["Action"]) if a.startswith(prefix)}


def ref(value) -> str | None:
    """The logical id a value points at ({"Ref": id} or {"Fn::GetAtt": [id, attr]})."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


@rule("s3-filter-encoded",
      "If your prefix or suffix contains a space, you must replace it with the '+' character. If you use any other "
      "special characters in the value of the prefix or suffix, you must enter them in URL-encoded format.",
      "Amazon S3 User Guide, 'Configuring event notifications using object key name filtering' "
      "(notification-how-to-filtering.html); the key in a notification is URL-encoded ('Event message structure')")
def s3_filter_encoded(template: dict) -> list[str]:
    bad = []
    configs = [props(r).get("NotificationConfiguration", {})
               for r in resources(template).values()
               if r["Type"] in ("Custom::S3BucketNotifications", "AWS::S3::Bucket")]
    for config in configs:
        for kind in ("QueueConfigurations", "LambdaFunctionConfigurations", "TopicConfigurations"):
            for target in config.get(kind, []):
                for f in target.get("Filter", {}).get("Key", {}).get("FilterRules", []):
                    value = f.get("Value")
                    # encoded on its own terms, not with the code under test: form encoding (a space is '+'),
                    # '/' kept; stricter than S3 may be, which only makes a cut value safer
                    if isinstance(value, str) and quote_plus(value, safe="/") != value:
                        bad.append(f"filter {f.get('Name')}={value!r} is not as S3 matches it (the key arrives "
                                   f"encoded: {quote_plus(value, safe='/')!r})")
    return bad


@rule("alarm-topic-allows-cloudwatch",
      "Allow the service principal cloudwatch.amazonaws.com SNS:Publish, limited with aws:SourceArn (the alarm's "
      "ARN) and aws:SourceAccount; a topic policy replaces the topic's default access policy",
      "Amazon CloudWatch User Guide, 'Notifying users on alarm changes', 'Preventing confused deputy security "
      "issues' (Notify_Users_Alarm_Changes.html)")
def alarm_topic_allows_cloudwatch(template: dict) -> list[str]:
    topics = resources(template, "AWS::SNS::Topic")
    policies = resources(template, "AWS::SNS::TopicPolicy").values()
    notified = {ref(a) for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
                for key in ("AlarmActions", "OKActions", "InsufficientDataActions")
                for a in props(alarm).get(key, [])} & set(topics)
    bad = []
    for topic in sorted(notified):
        statements = [s for p in policies if {"Ref": topic} in props(p).get("Topics", [])
                      for s in props(p)["PolicyDocument"]["Statement"]]
        if not statements:
            continue  # no topic policy: SNS's default one lets the account's services publish
        if not any(_allows_cloudwatch(s) for s in statements):
            bad.append(f"alarms notify topic {topic}, whose policy does not let cloudwatch.amazonaws.com publish "
                       "(scoped by aws:SourceArn / aws:SourceAccount)")
    return bad


def _allows_cloudwatch(statement: dict) -> bool:
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    principal = statement.get("Principal", {})
    services = principal.get("Service", []) if isinstance(principal, dict) else []
    services = [services] if isinstance(services, str) else services
    conditions = json.dumps(statement.get("Condition", {}))
    return (statement.get("Effect") == "Allow" and "cloudwatch.amazonaws.com" in services
            and any(a.lower() in ("sns:publish", "sns:*") for a in actions)
            and ("aws:SourceArn" in conditions or "aws:SourceAccount" in conditions))


def environments(template: dict) -> list[tuple[str, dict]]:
    """(function, its environment variables) for every function of the template."""
    return [(name, props(fn).get("Environment", {}).get("Variables", {}))
            for name, fn in resources(template, "AWS::Lambda::Function").items()]


ENV_LIMIT = 4096
TOKEN_BYTES = 256  # a Ref / GetAtt at the longest name it can resolve to (a queue URL, a table name)


@rule("lambda-environment-4kb",
      "Function environment variables: 4 KB, for all environment variables associated with the function, in "
      "aggregate (counted here as the bytes of every key and value)",
      "AWS Lambda Developer Guide, 'Lambda quotas' (gettingstarted-limits.html)")
def lambda_environment_4kb(template: dict) -> list[str]:
    bad = []
    for name, env in environments(template):
        size = sum(len(k.encode()) + (len(v.encode()) if isinstance(v, str) else TOKEN_BYTES) for k, v in env.items())
        if size > ENV_LIMIT:
            bad.append(f"{name}: environment of {size} bytes > 4 KB")
    return bad


@rule("async-lambda-on-failure",
      "If the function returns an error, Lambda attempts to run it two more times ... When an event fails all "
      "processing attempts, Lambda discards it; a rule target's DLQ only stores events that couldn't be delivered",
      "AWS Lambda Developer Guide, 'How Lambda handles errors and retries with asynchronous invocation' "
      "(invocation-async-error-handling.html); EventBridge User Guide, 'Using dead-letter queues' (rule-dlq.html)")
def async_lambda_on_failure(template: dict) -> list[str]:
    functions = resources(template, "AWS::Lambda::Function")
    with_destination = {ref(props(c).get("FunctionName")) for c in
                        resources(template, "AWS::Lambda::EventInvokeConfig").values()
                        if props(c).get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")}
    invoked = {}  # function -> who invokes it asynchronously: an event rule, or another function's role
    for rule_id, r in resources(template, "AWS::Events::Rule").items():
        for target in props(r).get("Targets", []):
            invoked.setdefault(ref(target.get("Arn")), f"rule {rule_id}")
    for policy_id, policy in resources(template, "AWS::IAM::Policy").items():
        for statement in props(policy)["PolicyDocument"]["Statement"]:
            if "lambda:InvokeFunction" in as_list(statement["Action"]):
                for target in as_list(statement["Resource"]):
                    invoked.setdefault(ref(target), f"the role of {policy_id}")
    bad = []
    for fn, by in sorted(invoked.items(), key=lambda kv: str(kv[0])):
        if fn in functions and fn not in with_destination and not props(functions[fn]).get("DeadLetterConfig"):
            bad.append(f"{fn} is invoked asynchronously (by {by}) and has no on-failure destination or DLQ: an "
                       "event it fails on is dropped")
    return bad


@rule("sqs-visibility-6x-timeout",
      "Set the source queue's visibility timeout to at least six times the timeout that you configure on your "
      "function",
      "AWS Lambda Developer Guide, 'Creating and configuring an Amazon SQS event source mapping' "
      "(services-sqs-configure.html)")
def sqs_visibility(template: dict) -> list[str]:
    queues, functions = resources(template, "AWS::SQS::Queue"), resources(template, "AWS::Lambda::Function")
    bad = []
    for mapping in resources(template, "AWS::Lambda::EventSourceMapping").values():
        queue, fn = ref(props(mapping).get("EventSourceArn")), ref(props(mapping).get("FunctionName"))
        if queue in queues and fn in functions:
            visibility = props(queues[queue]).get("VisibilityTimeout", 30)
            timeout = props(functions[fn]).get("Timeout", 3)
            # the poller holds received messages while it gathers a batch, so their visibility clock runs during
            # the batching window too: the window comes on top of the guide's 6x
            window = props(mapping).get("MaximumBatchingWindowInSeconds", 0)
            if visibility < 6 * timeout + window:
                bad.append(f"queue {queue}: visibility {visibility} s < 6 x {fn}'s timeout {timeout} s + its "
                           f"batching window {window} s")
    return bad


POWERTOOLS_NAME = re.compile(r"layer:AWSLambdaPowertoolsPython\w*-python(\d)(\d+)-(x86_64|arm64):")


@rule("layer-matches-function",
      "A layer is built for compatible runtimes and instruction set architectures; add only layers compatible "
      "with the function's runtime and architecture",
      "AWS Lambda Developer Guide, 'Managing Lambda dependencies with layers' / 'Adding layers to functions' "
      "(chapter-layers.html, adding-layers.html)")
def layer_matches_function(template: dict) -> list[str]:
    layers = resources(template, "AWS::Lambda::LayerVersion")
    bad = []
    for name, fn in resources(template, "AWS::Lambda::Function").items():
        runtime = props(fn).get("Runtime")
        arch = (props(fn).get("Architectures") or ["x86_64"])[0]
        for layer in props(fn).get("Layers", []):
            if ref(layer) in layers:
                p = props(layers[ref(layer)])
                runtimes, archs = p.get("CompatibleRuntimes"), p.get("CompatibleArchitectures", ["x86_64"])
                if (runtimes and runtime not in runtimes) or arch not in archs:
                    bad.append(f"{name} ({runtime}, {arch}) has layer {ref(layer)} for {runtimes}, {archs}")
                continue
            match = POWERTOOLS_NAME.search(json.dumps(layer))
            if match and (f"python{match[1]}.{match[2]}", match[3]) != (runtime, arch):
                bad.append(f"{name} ({runtime}, {arch}) has the Powertools layer for python{match[1]}.{match[2]}, "
                           f"{match[3]}")
    return bad


CREDENTIAL_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s@]+@|[?&](?:token|key|secret|sig|signature|password|"
                            r"api_key|apikey|access_token|auth)=", re.IGNORECASE)


@rule("no-credentials-in-environment",
      "Environment variables are visible to anyone who can read the function's configuration: store secrets in "
      "Secrets Manager, not in environment variables",
      "AWS Lambda Developer Guide, 'Securing Lambda environment variables' (configuration-envvars-encryption.html)")
def no_credentials_in_environment(template: dict) -> list[str]:
    bad = []
    for name, env in environments(template):
        for key, value in env.items():
            text = value if isinstance(value, str) else json.dumps(value)
            if CREDENTIAL_URL.search(text) or (key.endswith(("_URL", "_WEBHOOK")) and "://" in text):
                bad.append(f"{name}: {key} looks like a URL with credentials (or a webhook URL)")
    return bad


def _arn_text(value) -> str:
    """A resource ARN as text, its tokens (partition, region, account) left out: `arn::glue:::catalog`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(_arn_text(p) for p in value["Fn::Join"][1])
    return ""


GLUE_ARN = re.compile(r":glue:[^:]*:[^:]*:(catalog|database/([^/]+)|table/([^/]+)/([^/]+))$")


@rule("glue-table-actions-name-catalog-and-database",
      "Data Catalog resources are hierarchical, with the catalog as the root: an action on a table is authorized "
      "on the table, its database and the catalog, so a policy must name all three",
      "AWS Glue Developer Guide, 'Specifying AWS Glue resource ARNs' and 'Data Catalog ARNs' "
      "(glue-specifying-resource-arns.html)")
def glue_table_actions_name_catalog_and_database(template: dict) -> list[str]:
    bad = []
    for name, policy in resources(template, "AWS::IAM::Policy").items():
        for statement in props(policy)["PolicyDocument"]["Statement"]:
            if not any(str(a).startswith("glue:") for a in as_list(statement.get("Action"))):
                continue
            found = [GLUE_ARN.search(_arn_text(r)) for r in as_list(statement.get("Resource"))]
            kinds = [m.group(1) for m in found if m]
            databases = {m.group(2) for m in found if m and m.group(2)}
            for m in found:
                if m and m.group(3):
                    if "catalog" not in kinds:
                        bad.append(f"{name}: glue actions on table {m.group(3)}.{m.group(4)} without the catalog")
                    if m.group(3) not in databases:
                        bad.append(f"{name}: glue actions on table {m.group(3)}.{m.group(4)} without its database")
    return bad

"""Every template follows AWS's documented rules (tests/infra/aws_rules.py), and each rule catches the defect it
was written for: put back on a copy of a template, the rule reports it (as it would have on the main branch
before these rules, where each of these defects was real)."""

from __future__ import annotations

import copy
import json

import pytest

from tests.infra.aws_rules import RULES, resources
from tests.infra.conftest import APPS


@pytest.mark.parametrize("app", list(APPS))
@pytest.mark.parametrize("name", list(RULES))
def test_every_template_follows_the_rule(synthesized, app, name):
    # Given a template as synthesized, for each app and each rule
    rule = RULES[name]
    # When the rule is checked
    # Then it holds
    assert rule.check(synthesized[app].template) == [], f"{rule.says} ({rule.source})"


def _function(template: dict, handler: str) -> dict:
    return next(r for r in resources(template, "AWS::Lambda::Function").values()
                if r["Properties"].get("Handler") == f"streamwatch.handlers.{handler}.handler")


def raw_filter(t):  # main's default: prefix "data/dataset=" as it is
    (config,) = [r for r in resources(t, "Custom::S3BucketNotifications").values()]
    rules = config["Properties"]["NotificationConfiguration"]["QueueConfigurations"][0]["Filter"]["Key"]
    rules["FilterRules"][0]["Value"] = "data/dataset="


def tls_only_topic_policy(t):  # main's Topic(enforce_ssl=True): a policy with only the TLS Deny
    for policy in resources(t, "AWS::SNS::TopicPolicy").values():
        document = policy["Properties"]["PolicyDocument"]
        document["Statement"] = [s for s in document["Statement"] if s["Effect"] == "Deny"]


def rules_in_every_environment(t):  # main put every setting in every function; ~20 modest rules pass 4 KB
    rules = [{"name": f"feed{i}", "pattern": f"feeds/source-{i}/dt={{dataset_id}}/", "mode": "stability",
              "min_quiet_s": 900, "max_num_repeat": 4} for i in range(20)]
    _function(t, "monitor")["Properties"]["Environment"]["Variables"]["STREAMWATCH_DATASETS"] = json.dumps(rules)


def no_on_failure_destination(t):  # main: the consumer's async failures were dropped
    for name in list(resources(t, "AWS::Lambda::EventInvokeConfig")):
        del t["Resources"][name]


def short_visibility(t):  # exactly 6x the monitor's timeout, its batching window forgotten
    monitor = next(k for k, r in resources(t, "AWS::Lambda::Function").items()
                   if r["Properties"].get("Handler") == "streamwatch.handlers.monitor.handler")
    (mapping,) = [m for m in resources(t, "AWS::Lambda::EventSourceMapping").values()
                  if m["Properties"]["FunctionName"] == {"Ref": monitor}]
    assert mapping["Properties"]["MaximumBatchingWindowInSeconds"] > 0
    queue = mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
    t["Resources"][queue]["Properties"]["VisibilityTimeout"] = 6 * _function(t, "monitor")["Properties"]["Timeout"]


def other_runtime(t):
    _function(t, "observer")["Properties"]["Runtime"] = "python3.12"


def callback_url_in_environment(t):  # main: callback_url in six functions' environments
    _function(t, "observer")["Properties"]["Environment"]["Variables"]["STREAMWATCH_CALLBACK_URL"] = \
        "https://user:s3cret@hooks.example.com/streamwatch"


def glue_table_only(t):  # a policy naming the table alone: AWS denies the table's actions
    for policy in resources(t, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if any(str(a).startswith("glue:") for a in statement["Action"]):
                statement["Resource"] = [r for r in statement["Resource"] if "table/" in json.dumps(r)]


FLIPS = {
    "s3-filter-encoded": ("app", raw_filter),
    "alarm-topic-allows-cloudwatch": ("app-full", tls_only_topic_policy),
    "lambda-environment-4kb": ("app", rules_in_every_environment),
    "async-lambda-on-failure": ("app", no_on_failure_destination),
    "sqs-visibility-6x-timeout": ("app", short_visibility),
    "layer-matches-function": ("app", other_runtime),
    "no-credentials-in-environment": ("app", callback_url_in_environment),
    "glue-table-actions-name-catalog-and-database": ("app-full", glue_table_only),
}


def test_every_rule_has_its_defect_to_flip_back():
    # Given the defects to put back, one per rule name
    # When their names are compared with the rules'
    # Then every rule has its defect, and every defect its rule
    assert set(FLIPS) == set(RULES)


@pytest.mark.parametrize("name", list(FLIPS))
def test_each_rule_catches_its_defect(synthesized, name):
    # Given a copy of a template that the rule passes
    app, flip = FLIPS[name]
    template = copy.deepcopy(synthesized[app].template)
    assert RULES[name].check(template) == []
    # When the defect the rule was written for is put back on it
    flip(template)
    # Then the rule reports it
    assert RULES[name].check(template), name

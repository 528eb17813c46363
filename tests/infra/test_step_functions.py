"""examples/step_functions: a state machine that waits for a dataset, synthesized through cdk-nag (its findings fail
synth), with the wiring wait_for_dataset_task and grant_wait promise."""

from __future__ import annotations

import json

from streamwatch.core.limits import TABLE_ACTIONS
from tests.infra.aws_rules import actions, resources, role_statements


def _by_type(template: dict, kind: str) -> dict:
    return resources(template, kind)


def test_the_wait_state_sends_the_token_to_the_waits_queue_and_fails_on_a_failed_dataset(synthesized):
    # Given the example's template
    template = synthesized["stepfunctions"].template
    # When its state machine's definition is read
    (machine,) = _by_type(template, "AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p for p in parts if isinstance(p, str))
    # Then the first state is a .waitForTaskToken SendMessage of the dataset id and the task token, 6 h at most
    assert "arn:" in text and ":states:::sqs:sendMessage.waitForTaskToken" in text
    assert '"MessageBody":{"dataset_id.$":"$.dataset_id","task_token.$":"$$.Task.Token"}' in text
    assert '"TimeoutSeconds":21600' in text and '"ResultPath":"$.dataset"' in text
    # And streamwatch's failures are caught into a Fail state
    assert '"ErrorEquals":["streamwatch.DatasetFailed","streamwatch.DatasetStalled","States.Timeout"]' in text


def test_the_waits_function_answers_that_state_machine_only_and_hears_the_answering_events(synthesized):
    # Given the example's template
    template = synthesized["stepfunctions"].template
    functions = _by_type(template, "AWS::Lambda::Function")
    (waits_id,) = [k for k, v in functions.items()
                   if v["Properties"].get("Handler") == "streamwatch.handlers.waits.handler"]
    (machine_id,) = _by_type(template, "AWS::StepFunctions::StateMachine")
    # When the waits function's role and the bus's rules are read
    role = functions[waits_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    states = [s for s in role_statements(template, role) if any(str(a).startswith("states:") for a in
                                                                  (s["Action"] if isinstance(s["Action"], list)
                                                                   else [s["Action"]]))]
    # Then it may use the state table exactly as its code does (tests/security records the calls)
    assert actions(role_statements(template, role), "dynamodb:") == set(TABLE_ACTIONS["Waits"])
    # And it may send task answers, on the example's state machine and nothing else
    assert [sorted(s["Action"]) for s in states] == [["states:SendTaskFailure", "states:SendTaskSuccess"]]
    assert states[0]["Resource"] in ({"Ref": machine_id}, [{"Ref": machine_id}])
    # And a rule sends it Dataset Ready, Failed and Stalled, retried for a day, with a DLQ
    rules = [r["Properties"] for r in _by_type(template, "AWS::Events::Rule").values()
             if r["Properties"].get("EventPattern", {}).get("detail-type") == ["Dataset Ready", "Dataset Failed",
                                                                              "Dataset Stalled"]]
    assert len(rules) == 1 and rules[0]["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] == 185
    # And the state machine's role may send to the waits queue; the Queues output names it for `streamwatch dlq`
    machine_role = _by_type(template, "AWS::StepFunctions::StateMachine")[machine_id]["Properties"]["RoleArn"]
    sends = [s for s in role_statements(template, machine_role["Fn::GetAtt"][0]) if "sqs:SendMessage" in
             (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    assert sends
    outputs = json.dumps(template["Outputs"])
    assert "waits" in outputs

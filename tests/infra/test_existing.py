"""The construct in a user's app, on resources that already exist: each combination of passed and created
resources, contradicting props refused, the example app through cdk-nag, and a Lambda asset of runtime code only
(with obstore for the Lambda platform in the dependency layer, importable by the handlers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template

from streamwatch.cdk import Streamwatch, StreamwatchPropsError, register_nag
from streamwatch.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RULES = ({"pattern": "orders/{dataset_id}/", "name": "orders"},)


def stack_with(**kwargs) -> tuple[cdk.Stack, Streamwatch]:
    app = cdk.App()
    register_nag(app)
    stack = cdk.Stack(app, "User")
    passed = {}
    if kwargs.pop("existing_bucket", False):
        passed["bucket"] = s3.Bucket.from_bucket_name(stack, "Theirs", "their-bucket")
    if kwargs.pop("existing_stream", False):
        passed["delivery_stream"] = firehose.DeliveryStream.from_delivery_stream_name(stack, "S", "their-stream")
    if kwargs.pop("existing_bus", False):
        passed["event_bus"] = events.EventBus.from_event_bus_name(stack, "B", "their-bus")
    watch = Streamwatch(stack, "Watch", settings=Settings(datasets=RULES, example_consumer=False, **kwargs), **passed)
    return stack, watch


@pytest.fixture(scope="module")
def theirs() -> tuple[Template, Streamwatch]:
    """Their bucket, their stream, their bus: the construct creates only what watching needs."""
    stack, watch = stack_with(existing_bucket=True, existing_stream=True, existing_bus=True)
    return Template.from_stack(stack), watch


def test_nothing_they_passed_is_created(theirs):
    # Given the construct on their bucket, their stream and their bus
    template, watch = theirs
    # When its template's resources are counted
    # Then it creates no bucket, no stream and no bus
    for kind in ("AWS::S3::Bucket", "AWS::KinesisFirehose::DeliveryStream", "AWS::Events::EventBus"):
        template.resource_count_is(kind, 0)
    # And it is notified through EventBridge, and packs no records
    assert watch.settings.notifications == "eventbridge" and watch.settings.pack_records is False


def test_their_bucket_notifies_through_eventbridge_for_the_watched_prefixes(theirs):
    # Given the construct on their bucket
    template, watch = theirs
    # When its bucket notifications are looked for
    # Then their bucket sends its events to EventBridge, the configuration not managed
    template.has_resource_properties("Custom::S3BucketNotifications", {
        "BucketName": "their-bucket", "NotificationConfiguration": {"EventBridgeConfiguration": {}},
        "Managed": False})
    # And a rule sends their bucket's Object Created under errors/ and orders/ to the queue, with a DLQ
    queue = watch.node.find_child("Notifications").node.find_child("Queue").node.default_child
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.s3"], "detail-type": ["Object Created"],
                         "detail": {"bucket": {"name": ["their-bucket"]},
                                    "object": {"key": [{"prefix": "errors/"}, {"prefix": "orders/"}]}}},
        "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [cdk.Stack.of(watch).get_logical_id(queue), "Arn"]},
                                       "DeadLetterConfig": Match.any_value()})]})


def test_producers_may_put_to_their_stream_and_events_go_to_their_bus(theirs):
    # Given the construct on their stream and their bus
    template, _ = theirs
    # When its policies are read
    policies = json.dumps(template.find_resources("AWS::IAM::Policy"))
    # Then they grant PutRecordBatch on their stream, and name their bus
    assert "deliverystream/their-stream" in policies and "firehose:PutRecordBatch" in policies
    assert "event-bus/their-bus" in policies


@pytest.mark.parametrize("passed", [{"existing_bucket": True}, {"existing_bus": True}, {}])
def test_each_combination_synthesizes_through_cdk_nag(passed, tmp_path):
    # Given the construct on what the parameter passes (their bucket, their bus, or nothing), cdk-nag registered
    stack, watch = stack_with(**passed)
    # When the app is synthesized (any unacknowledged finding raises)
    cdk.App.of(stack).synth()  # raises on any unacknowledged cdk-nag finding
    template = Template.from_stack(stack)
    # Then it creates the bucket and the bus only where none was passed, and the stream always
    template.resource_count_is("AWS::S3::Bucket", 0 if passed.get("existing_bucket") else 1)
    template.resource_count_is("AWS::KinesisFirehose::DeliveryStream", 1)
    template.resource_count_is("AWS::Events::EventBus", 0 if passed.get("existing_bus") else 1)


def test_an_existing_resource_and_props_for_a_new_one_is_an_error():
    # Given their bucket
    stack = cdk.Stack(cdk.App(), "X")
    bucket = s3.Bucket.from_bucket_name(stack, "B", "their-bucket")
    # When it is passed along with props for a new bucket
    # Then the error says to give one or the other
    with pytest.raises(StreamwatchPropsError, match="give bucket= .* or bucket_props= .*not both"):
        Streamwatch(stack, "W", bucket=bucket, bucket_props={"versioned": True})
    # And a stream of theirs without their bucket is refused, saying to pass that bucket
    with pytest.raises(StreamwatchPropsError, match="pass that bucket as bucket="):
        Streamwatch(cdk.Stack(cdk.App(), "Y"), "W", delivery_stream=firehose.DeliveryStream.from_delivery_stream_name(
            cdk.Stack(cdk.App(), "Z"), "S", "s"))


def test_on_event_routes_any_detail_type_to_any_target():
    # Given the construct, and a queue of the user's with its DLQ
    stack, watch = stack_with()
    dead = sqs.Queue(stack, "AirflowDlq", enforce_ssl=True)
    queue = sqs.Queue(stack, "Airflow", enforce_ssl=True, dead_letter_queue=sqs.DeadLetterQueue(queue=dead,
                                                                                                 max_receive_count=3))
    # When on_event routes Dataset Failed and Dataset Overdue to it
    watch.on_event(targets.SqsQueue(queue), "Dataset Failed", "Dataset Overdue")
    # Then a rule sends it exactly those detail types
    Template.from_stack(stack).has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["streamwatch"], "detail-type": ["Dataset Failed", "Dataset Overdue"]}})
    # And an unknown detail type is refused by name
    with pytest.raises(StreamwatchPropsError, match="unknown detail-type 'Dataset Done'"):
        watch.on_event(targets.SqsQueue(queue), "Dataset Done")


def test_the_example_app_on_existing_resources_synthesizes_through_cdk_nag(synthesized):
    # Given the example app on existing resources
    template = synthesized["existing"].template  # synthesized by app.py with cdk-nag on (tests/infra/conftest.py)
    # When its resource types and S3 rules are read
    kinds = {r["Type"] for r in template["Resources"].values()}
    # Then it creates no bucket and no stream
    assert "AWS::S3::Bucket" not in kinds and "AWS::KinesisFirehose::DeliveryStream" not in kinds
    # And one rule takes acme-raw-events' Object Created under each watched prefix
    patterns = [r["Properties"].get("EventPattern", {}) for r in template["Resources"].values()
                if r["Type"] == "AWS::Events::Rule"]
    rules = [p for p in patterns if p.get("source") == ["aws.s3"]]
    assert rules == [{"source": ["aws.s3"], "detail-type": ["Object Created"],
                      "detail": {"bucket": {"name": ["acme-raw-events"]}, "object": {"key": [
                          {"prefix": "clicks/"}, {"prefix": "errors/"}, {"prefix": "orders/dt="}]}}}]


@pytest.fixture(scope="module")
def assembly(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(outdir=str(out))
    Streamwatch(cdk.Stack(app, "Assets"), "Watch")
    app.synth()
    return out


def assets(out: Path) -> dict[str, Path]:
    manifest = json.loads((out / "Assets.assets.json").read_text())
    return {k: out / v["source"]["path"] for k, v in manifest["files"].items() if "path" in v["source"]
            and (out / v["source"]["path"]).is_dir()}


def run_isolated(code: str, *front: Path, env: dict | None = None, cwd: Path | None = None):
    """`code` in a Python without site (`-S`): `front` first on the path, then only this venv's site-packages
    (what Lambda's runtime and layers give, or what pip installs): no repository checkout on the path."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    prelude = f"import sys; sys.path[:0] = {[str(p) for p in front]!r}; sys.path.append({site!r})\n"
    return subprocess.run([sys.executable, "-S", "-c", prelude + code], capture_output=True, text=True,
                          timeout=300, env=env or {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"},
                          cwd=cwd)


def test_the_lambda_asset_holds_runtime_code_only(assembly):
    # Given the assets of a synthesized construct
    # When the runtime asset's files are listed
    (runtime,) = [p for p in assets(assembly).values() if (p / "streamwatch" / "handlers").is_dir()]
    names = {str(p.relative_to(runtime)) for p in runtime.rglob("*")}
    # Then it holds the handlers and the reader, nothing of cdk, local or the cli, no __main__, no __pycache__
    assert "streamwatch/handlers/monitor.py" in names and "streamwatch/reader/objects.py" in names
    assert not [n for n in names if n.split("/")[:2] in (["streamwatch", "cdk"], ["streamwatch", "local"],
                                                        ["streamwatch", "cli"])
                or n in ("streamwatch/cli/status.py", "streamwatch/__main__.py") or "__pycache__" in n]


def test_the_dependency_layer_holds_obstore_for_the_lambda_platform_and_handlers_import_from_it(assembly):
    # Given the dependency layer and the runtime asset of a synthesized construct
    (layer,) = [p for p in assets(assembly).values() if (p / "python" / "obstore").is_dir()]
    # When the layer's obstore wheel is read
    (wheel,) = (layer / "python").glob("obstore-*.dist-info/WHEEL")
    tags = [line.split(": ", 1)[1] for line in wheel.read_text().splitlines() if line.startswith("Tag:")]
    # Then it is built for Lambda's platform: abi3, manylinux, x86_64
    assert any("abi3" in t and "manylinux" in t and t.endswith("x86_64") for t in tags), tags
    (runtime,) = [p for p in assets(assembly).values() if (p / "streamwatch" / "handlers").is_dir()]
    # Lambda's path: the asset, then the layer; boto3 and Powertools from the runtime and the managed layer
    out = run_isolated("import streamwatch.handlers.monitor, streamwatch.handlers.observer, "
                       "streamwatch.handlers.producer, streamwatch.handlers.consumer, streamwatch.handlers.scheduler, "
                       "obstore, streamwatch\nprint(obstore.__file__); print(streamwatch.__file__)\n"
                       "print(any(m.startswith(('aws_cdk', 'rich', 'moto')) for m in sys.modules))",
                       runtime, layer / "python")
    # And the handlers import there, obstore from the layer and streamwatch from the asset, no cdk, rich or moto
    assert out.returncode == 0, out.stderr[-2000:]
    obstore_file, package_file, extras = out.stdout.split()
    assert obstore_file.startswith(str(layer)) and package_file.startswith(str(runtime)) and extras == "False"


def test_the_wheel_provides_the_construct_from_where_it_is_installed(tmp_path):
    # Given the wheel `make dist` builds, unpacked as pip installs it (no repository on the path)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, timeout=300, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("streamwatch-*.whl")
    installed = tmp_path / "site"
    import zipfile
    zipfile.ZipFile(wheel).extractall(installed)
    code = ("import aws_cdk as cdk, streamwatch\n"
            "from streamwatch.cdk import Streamwatch\n"
            f"assert streamwatch.__file__.startswith({str(installed)!r}), streamwatch.__file__\n"
            f"app = cdk.App(outdir={str(tmp_path / 'out')!r}); Streamwatch(cdk.Stack(app, 'FromWheel'), 'Watch')\n"
            "app.synth()\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # When a user's app synthesizes the construct from it
    result = run_isolated(code, installed, env=env, cwd=tmp_path)
    # Then the runtime asset comes from the installed package
    assert result.returncode == 0, result.stderr[-2000:]
    assert (installed / "streamwatch" / "cdk" / "lambda-requirements.txt").exists()
    handlers = list((tmp_path / "out").glob("asset.*/streamwatch/handlers/monitor.py"))
    assert len(handlers) == 1


def test_the_producer_lambda_bundles_the_users_record_source(tmp_path):
    # Given record_source in a code directory of the user's (with no Docker anywhere)
    app = cdk.App(outdir=str(tmp_path))
    settings = Settings(record_source="sources:orders", producer_code_dir=str(ROOT / "tests" / "fixtures"))
    # When the construct is built and the app synthesized
    watch = Streamwatch(cdk.Stack(app, "Own"), "Watch", settings=settings)
    app.synth()
    # Then the producer's asset holds the user's module at its root, next to the runtime package
    template = Template.from_stack(cdk.Stack.of(watch))
    producer = cdk.Stack.of(watch).get_logical_id(watch.producer.node.default_child)
    env = template.to_json()["Resources"][producer]["Properties"]["Environment"]["Variables"]
    assert env["STREAMWATCH_RECORD_SOURCE"] == "sources:orders"
    bundles = [p for p in tmp_path.glob("asset.*") if (p / "sources.py").exists()]
    assert len(bundles) == 1 and (bundles[0] / "streamwatch" / "handlers" / "producer.py").exists()
    assert not (bundles[0] / "streamwatch" / "cdk").exists()

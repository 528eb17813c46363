"""Dataset rules: keys -> datasets and back, Firehose's prefix from the same pattern, and bad rules refused."""

from datetime import UTC, datetime

import pytest

from streamwatch.core.rules import RuleError, RuleSet
from streamwatch.core.settings import Settings, SettingsError


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_the_default_rule_is_todays_layout_in_both_directions():
    # Given the default rule, data/dataset={dataset_id}/
    # When it is parsed
    rules = RuleSet.parse(["data/dataset={dataset_id}/"])
    rule = rules.stream_rule
    # Then Firehose's prefix and jq query partition by dataset_id
    assert rule.firehose_prefix() == "data/dataset=!{partitionKeyFromQuery:dataset_id}/"
    assert rule.jq_query() == {"dataset_id": ".dataset_id"}
    # And a key under it names its dataset, with no window
    match = rules.match("data/dataset=run-42/streamwatch-stream-1-2026-11-23-10-00-00-abc")
    assert match.dataset_id == "run-42" and match.window_start is None
    # And back: the dataset's prefix and the fields its records carry
    assert rule.prefix_of("run-42") == "data/dataset=run-42/"
    assert rule.record_fields("run-42") == {"dataset_id": "run-42"}


@pytest.mark.parametrize("key", [
    "data/dataset=d1",                      # no object name
    "data/other=d1/x",                      # not the pattern
    "elsewhere/dataset=d1/x",               # outside the prefix
    "data/dataset=/x",                      # empty field
    "data/dataset=../x/y",                  # a field value cannot hold '/'
    "data/dataset=d1/_manifest.json",       # a consumer's marker files are not data
    "data/dataset=d1/_SUCCESS",
])
def test_keys_outside_the_layout_are_not_data(key):
    # Given a key outside the layout (the parameter)
    # When the default rule matches it
    # Then it is not data
    assert RuleSet.parse(["data/dataset={dataset_id}/"]).match(key) is None


def test_nested_object_names_belong_to_their_dataset():
    # Given an object name with folders of its own, under d1's prefix
    # When the default rules match it
    # Then it belongs to d1
    assert RuleSet.parse(None).match("data/dataset=d1/2026/11/23/part").dataset_id == "d1"


def test_hive_style_fields_make_one_id_and_a_prefix_back():
    # Given a rule with two hive-style fields, source and dt
    rules = RuleSet.parse(["events/source={source}/dt={dt}/"])
    # When a key under it is matched
    match = rules.match("events/source=web/dt=2026-11-24/part-0.json")
    # Then its dataset id joins both values with '~', and its fields are kept
    assert match.dataset_id == "web~2026-11-24" and match.fields == {"source": "web", "dt": "2026-11-24"}
    # And the id gives the prefix back, and Firehose's prefix partitions by both fields
    assert rules.stream_rule.prefix_of("web~2026-11-24") == "events/source=web/dt=2026-11-24/"
    assert rules.stream_rule.firehose_prefix() == ("events/source=!{partitionKeyFromQuery:source}/"
                                                   "dt=!{partitionKeyFromQuery:dt}/")


def test_several_rules_name_their_datasets_and_the_first_match_wins():
    # Given two named rules, orders and clicks
    rules = RuleSet.parse([{"pattern": "orders/{dataset_id}/", "name": "orders", "mode": "records"},
                           {"pattern": "clicks/{dataset_id}/", "name": "clicks", "mode": "stability"}])
    # When keys under each are matched
    # Then each id is prefixed by its rule's name
    assert rules.match("orders/2026-11-24/a").dataset_id == "orders~2026-11-24"
    assert rules.match("clicks/2026-11-24/a").dataset_id == "clicks~2026-11-24"
    # And an id names its rule back, the rules watch both prefixes, and an id of no rule is refused
    assert rules.rule_for("clicks~2026-11-24").name == "clicks"
    assert rules.watched_prefixes == ["clicks/", "orders/"]
    with pytest.raises(RuleError, match="names no rule"):
        rules.rule_for("nope~1")


@pytest.mark.parametrize("key, dataset, start", [
    ("logs/2026/11/24/13/s-1-2026-11-24-13-59-59-x", "hourly~2026-11-24T13", "2026-11-24T13:00:00"),
    ("logs/2026/11/24/00/part", "hourly~2026-11-24T00", "2026-11-24T00:00:00"),     # day rollover
    ("logs/2026/12/31/23/part", "hourly~2026-12-31T23", "2026-12-31T23:00:00"),     # year end
])
def test_hour_windows_are_utc_and_named_by_rule_and_hour(key, dataset, start):
    # Given an hourly rule over UTC time fields
    rules = RuleSet.parse([{"pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/", "name": "hourly"}])
    # When a key of the parameter's hour is matched
    match = rules.match(key)
    # Then its dataset is named by rule and hour, its window starts at that UTC hour
    assert match.dataset_id == dataset and match.window_start == ts(start)
    # And the rule's window is an hour, its ids parse back to the start, and Firehose's prefix is built of timestamps
    rule = rules.stream_rule
    assert rule.window_s == 3600
    assert rule.parse_id(dataset)[1] == ts(start)
    assert rule.prefix_of(dataset) == key[: len("logs/2026/11/24/13/")]
    assert rule.firehose_prefix() == "logs/!{timestamp:yyyy}/!{timestamp:MM}/!{timestamp:dd}/!{timestamp:HH}/"


def test_hive_day_windows_with_a_field():
    # Given a daily rule with a field and a date
    rules = RuleSet.parse([{"pattern": "ev/source={source}/dt={yyyy}-{MM}-{dd}/", "name": "daily"}])
    # When a key under it is matched
    match = rules.match("ev/source=app/dt=2026-02-28/x")
    # Then its id holds the rule, the field and the day, its window starts at that day's midnight UTC
    assert match.dataset_id == "daily~app~2026-02-28" and match.window_start == ts("2026-02-28T00:00:00")
    # And the window is a day, records carry only the field, and an impossible date is no match
    assert rules.stream_rule.window_s == 86_400
    assert rules.stream_rule.record_fields("daily~app~2026-02-28") == {"source": "app"}
    assert rules.match("ev/source=app/dt=2026-02-30/x") is None  # not a date


@pytest.mark.parametrize("spec, message", [
    ("raw/", "has no field"),
    ("raw/{dataset_id}", "ends with '/'"),
    ("/raw/{dataset_id}/", "does not start with '/'"),
    ("raw/{a}{b}/", "touch"),
    ("raw/{dataset-id}/", "cannot be filled"),
    ("raw/{mm}/", "looks like a time"),
    ("raw/{yyyy}/{HH}/", "time fields must be"),
    ("raw/!{timestamp:yyyy}/{x}/", "generated"),
    ("raw/{x}/{x}/", "appears twice"),
    ("raw/{_sw}/", "cannot be filled"),
    ({"pattern": "raw/{x}/", "mod": "records"}, "did you mean mode"),
])
def test_bad_rules_fail_with_a_message_that_names_the_problem(spec, message):
    # Given a bad rule (the parameter)
    # When it is parsed
    # Then RuleError names its problem
    with pytest.raises(RuleError, match=message):
        RuleSet.parse([spec])


def test_a_rule_that_can_never_match_is_refused():
    # Given a wide rule before a narrower one it covers
    # When they are parsed
    # Then the narrower one is refused: it can never match
    with pytest.raises(RuleError, match="can never match"):
        RuleSet.parse([{"pattern": "data/{a}/", "name": "wide"}, {"pattern": "data/x/{b}/", "name": "narrow"}])
    # And the narrower rule first is fine
    RuleSet.parse([{"pattern": "data/x/{b}/", "name": "narrow"}, {"pattern": "data/{a}/", "name": "wide"}])


def test_several_rules_each_need_a_name():
    # Given two rules without names
    # When they are parsed
    # Then RuleError says they need a name
    with pytest.raises(RuleError, match="needs a name"):
        RuleSet.parse(["a/{x}/", "b/{y}/"])


def test_rule_policy_overrides_are_validated_by_the_settings():
    # Given rules that override policy settings
    # When the settings are built with them
    # Then an override out of range is refused, naming the rule and the setting
    with pytest.raises(SettingsError, match="dataset rule 'r': setting max_num_repeat=0 is out of range"):
        Settings(datasets=({"pattern": "a/{x}/", "name": "r", "max_num_repeat": 0},))
    # And window mode without time fields is refused
    with pytest.raises(SettingsError, match="mode 'window' needs time fields"):
        Settings(datasets=({"pattern": "a/{x}/", "name": "r", "mode": "window"},))
    # And a valid override applies to its rule only
    s = Settings(datasets=({"pattern": "a/{x}/", "name": "r", "min_quiet_s": 900},))
    assert s.for_rule(s.rules.rules[0]).quiet_s == 900 and s.quiet_s != 900

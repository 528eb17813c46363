"""Settings: one object, validated with messages that name the setting, the value and the range."""

import pytest

from streamwatch.core.settings import Settings, SettingsError


def test_defaults_are_valid_and_derive_the_quiet_window_from_the_buffer_interval():
    # Given the default settings
    # When their quiet window is derived
    s = Settings()
    # Then it is at least the buffer interval, and grows with it
    assert s.quiet_s >= s.buffer_interval_s
    assert Settings(buffer_interval_s=60).quiet_s < Settings(buffer_interval_s=900).quiet_s


def test_env_round_trip_is_lossless():
    # Given settings that differ from the defaults in many ways
    s = Settings(mode="records", max_num_repeat=7, decay="exponential", min_quiet_s=400, callback_url="",
                 pack_records=False, deadline_s=3600, alarm_email="ops@example.com")
    # When they go to the environment and back
    # Then they are the same settings
    assert Settings.from_env(s.to_env()) == s


def test_context_strings_are_coerced():
    # Given CDK context strings: "5" for a number, "" for one left unset
    # When they are read
    # Then "5" is the number 5
    assert Settings.from_mapping({"max_num_repeat": "5", "min_quiet_s": ""}).max_num_repeat == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"max_num_repeat": 0}, "max_num_repeat=0 is out of range: allowed 1..100"),
    ({"base_delay_s": 901}, "base_delay_s=901 is out of range: allowed 1..900"),
    ({"buffer_size_mib": 32}, "buffer_size_mib=32 is out of range: allowed 64..128"),
    ({"mode": "magic"}, "mode='magic' is invalid: allowed auto, stability, producers, records, window"),
    ({"min_quiet_s": 100, "buffer_interval_s": 300}, "min_quiet_s=100 is out of range: allowed 300..86400"),
    ({"max_observation_s": 400}, "max_observation_s=400 is out of range"),
    ({"error_prefix": "errors"}, "error_prefix='errors' is invalid"),
    ({"datasets": ("raw/",)}, "setting datasets: dataset rule 'default' ('raw/'): the pattern has no field"),
    ({"alarm_email": "nobody"}, "alarm_email='nobody' is invalid"),
    ({"record_source": "mymodule"}, "record_source='mymodule' is invalid"),
    ({"deadline_s": 10}, "deadline_s=10 is out of range: allowed 60..604800"),
    ({"monitor_batch_size": 100, "monitor_batch_window_s": 0}, "monitor_batch_window_s=0 is out of range"),
    ({"log_retention_days": 2}, "log_retention_days=2 is invalid"),
])
def test_bad_values_name_setting_value_and_range(kwargs, message):
    # Given a value out of range or invalid (the parameter)
    # When settings are built with it
    # Then SettingsError names the setting, the value and what is allowed
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**kwargs)


def test_a_non_number_from_context_is_a_clear_error():
    # Given "three" from the context for a number
    # When it is read
    # Then the error names the setting, the value and the type expected
    with pytest.raises(SettingsError, match="setting max_num_repeat='three' is invalid: expected int"):
        Settings.from_mapping({"max_num_repeat": "three"})


def test_unknown_names_are_refused_with_a_did_you_mean():
    # Given a setting name with a typo, and one that is no setting at all
    # When they are read
    # Then each is refused, the typo with a did-you-mean
    with pytest.raises(SettingsError, match=r"unknown setting 'max_num_repat' \(did you mean max_num_repeat\?\)"):
        Settings.from_mapping({"max_num_repat": "5"})
    with pytest.raises(SettingsError, match="unknown setting 'nosuch'"):
        Settings.from_mapping({"nosuch": "1"})


def test_cdk_context_typos_fail_but_cdk_keys_and_unrelated_keys_pass():
    # Given a typo among the CDK context's keys
    # When the context is read
    # Then it fails with a did-you-mean
    with pytest.raises(SettingsError, match="did you mean buffer_interval_s"):
        Settings.from_context({"bufer_interval_s": 60})
    # And CDK's own keys and unrelated ones pass, while the setting among them is read
    s = Settings.from_context({"@aws-cdk/core:checkSecretUsage": True, "stack_name": "X", "acknowledge": "y",
                               "buffer_interval_s": "120"})
    assert s.buffer_interval_s == 120


def test_unknown_environment_variables_are_reported_not_fatal():
    # Given the defaults' environment, plus a mistyped setting and two variables the runtime reads
    env = {**Settings().to_env(), "STREAMWATCH_MAX_NUM_REPAT": "5", "STREAMWATCH_RES_TABLE": "t",
           "STREAMWATCH_LEASE_S": "2"}
    # When it is read
    # Then the settings are the defaults, and only the typo is reported, with a did-you-mean
    assert Settings.from_env(env) == Settings()
    assert Settings.unknown_env(env) == ["environment variable STREAMWATCH_MAX_NUM_REPAT is not a streamwatch "
                                         "setting and is ignored (did you mean max_num_repeat?)"]


def test_rules_travel_through_the_environment_and_context_as_json():
    # Given two rules: one with its own mode, and an hourly one that emits empty windows
    rules = ({"pattern": "orders/{dataset_id}/", "name": "orders", "mode": "records"},
             {"pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/", "name": "hourly", "emit_empty": True})
    s = Settings(datasets=rules)
    # When they go to the environment and back
    # Then they are the same
    assert Settings.from_env(s.to_env()) == s
    # And from the context, rules come as JSON, or as a bare pattern
    assert Settings.from_mapping({"datasets": '[{"pattern": "raw/{id}/"}]'}).rules.stream_rule.pattern == "raw/{id}/"
    assert Settings.from_mapping({"datasets": "raw/{id}/"}).datasets == ("raw/{id}/",)


def test_window_grace_derives_from_the_buffer_interval_and_can_be_set():
    # Given buffer intervals of 60 and 300 s
    # When the window grace is derived from them
    # Then it is 1.5 x the interval plus 60 s, unless it is set
    assert Settings(buffer_interval_s=60).window_grace_s == 150  # 1.5 x 60 + 60: the hour's last buffer lands late
    assert Settings(buffer_interval_s=300).window_grace_s == 510
    assert Settings(buffer_interval_s=300, grace_s=30).window_grace_s == 30  # event-time partitions: your lateness

"""Settings: one object, validated with messages that name the setting, the value and the range."""

import pytest

from streamwatch.core.settings import Settings, SettingsError


def test_defaults_are_valid_and_derive_the_quiet_window_from_the_buffer_interval():
    s = Settings()
    assert s.quiet_s >= s.buffer_interval_s
    assert Settings(buffer_interval_s=60).quiet_s < Settings(buffer_interval_s=900).quiet_s


def test_env_round_trip_is_lossless():
    s = Settings(mode="records", max_num_repeat=7, decay="exponential", min_quiet_s=400, callback_url="",
                 pack_records=False, deadline_s=3600, alarm_email="ops@example.com")
    assert Settings.from_env(s.to_env()) == s


def test_context_strings_are_coerced():
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
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**kwargs)


def test_a_non_number_from_context_is_a_clear_error():
    with pytest.raises(SettingsError, match="setting max_num_repeat='three' is invalid: expected int"):
        Settings.from_mapping({"max_num_repeat": "three"})


def test_unknown_names_are_refused_with_a_did_you_mean():
    with pytest.raises(SettingsError, match=r"unknown setting 'max_num_repat' \(did you mean max_num_repeat\?\)"):
        Settings.from_mapping({"max_num_repat": "5"})
    with pytest.raises(SettingsError, match="unknown setting 'nosuch'"):
        Settings.from_mapping({"nosuch": "1"})


def test_cdk_context_typos_fail_but_cdk_keys_and_unrelated_keys_pass():
    with pytest.raises(SettingsError, match="did you mean buffer_interval_s"):
        Settings.from_context({"bufer_interval_s": 60})
    s = Settings.from_context({"@aws-cdk/core:checkSecretUsage": True, "stack_name": "X", "acknowledge": "y",
                               "buffer_interval_s": "120"})
    assert s.buffer_interval_s == 120


def test_unknown_environment_variables_are_reported_not_fatal():
    env = {**Settings().to_env(), "STREAMWATCH_MAX_NUM_REPAT": "5", "STREAMWATCH_RES_TABLE": "t",
           "STREAMWATCH_PUBLISH_LEASE_S": "2"}
    assert Settings.from_env(env) == Settings()
    assert Settings.unknown_env(env) == ["environment variable STREAMWATCH_MAX_NUM_REPAT is not a streamwatch "
                                         "setting and is ignored (did you mean max_num_repeat?)"]


def test_rules_travel_through_the_environment_and_context_as_json():
    rules = ({"pattern": "orders/{dataset_id}/", "name": "orders", "mode": "records"},
             {"pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/", "name": "hourly", "emit_empty": True})
    s = Settings(datasets=rules)
    assert Settings.from_env(s.to_env()) == s
    assert Settings.from_mapping({"datasets": '[{"pattern": "raw/{id}/"}]'}).rules.stream_rule.pattern == "raw/{id}/"
    assert Settings.from_mapping({"datasets": "raw/{id}/"}).datasets == ("raw/{id}/",)


def test_window_grace_derives_from_the_buffer_interval_and_can_be_set():
    assert Settings(buffer_interval_s=60).window_grace_s == 150  # 1.5 x 60 + 60: the hour's last buffer lands late
    assert Settings(buffer_interval_s=300).window_grace_s == 510
    assert Settings(buffer_interval_s=300, grace_s=30).window_grace_s == 30  # event-time partitions: your lateness

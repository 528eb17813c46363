"""Settings: one object, validated with messages that name the setting, the value and the range."""

import pytest

from streamwatch.settings import Settings, SettingsError


def test_defaults_are_valid_and_derive_the_quiet_window_from_the_buffer_interval():
    s = Settings()
    assert s.quiet_s >= s.buffer_interval_s
    assert Settings(buffer_interval_s=60).quiet_s < Settings(buffer_interval_s=900).quiet_s


def test_env_round_trip_is_lossless():
    s = Settings(mode="records", max_num_repeat=7, decay="exponential", min_quiet_s=400, callback_url="")
    assert Settings.from_env(s.to_env()) == s


def test_context_strings_are_coerced():
    assert Settings.from_mapping({"max_num_repeat": "5", "min_quiet_s": ""}).max_num_repeat == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"max_num_repeat": 0}, "max_num_repeat=0 is out of range: allowed 1..100"),
    ({"base_delay_s": 901}, "base_delay_s=901 is out of range: allowed 1..900"),
    ({"buffer_size_mib": 32}, "buffer_size_mib=32 is out of range: allowed 64..128"),
    ({"mode": "magic"}, "mode='magic' is invalid: allowed stability, producers, records"),
    ({"min_quiet_s": 100, "buffer_interval_s": 300}, "min_quiet_s=100 is out of range: allowed 300..86400"),
    ({"max_observation_s": 400}, "max_observation_s=400 is out of range"),
    ({"data_prefix": "data"}, "data_prefix='data' is invalid"),
    ({"monitor_batch_size": 100, "monitor_batch_window_s": 0}, "monitor_batch_window_s=0 is out of range"),
    ({"log_retention_days": 2}, "log_retention_days=2 is invalid"),
])
def test_bad_values_name_setting_value_and_range(kwargs, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**kwargs)


def test_a_non_number_from_context_is_a_clear_error():
    with pytest.raises(SettingsError, match="setting max_num_repeat='three' is invalid: expected int"):
        Settings.from_mapping({"max_num_repeat": "three"})

"""The --retention setting: its grammar, its check at start, and what a pass derives from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scanq.config import Settings
from scanq.exceptions import ConfigError
from scanq.models import TERMINAL_STATUSES, ScanStatus
from scanq.retention import MAX_INTERVAL_S, MIN_INTERVAL_S, RetentionPolicy


def test_rules_give_an_age_per_terminal_status_in_any_unit_and_case() -> None:
    policy = RetentionPolicy.parse(["Complete=30d", " error = 1.5h ", "CANCELLED=90s"])

    assert policy.ages == {
        ScanStatus.COMPLETE: timedelta(days=30),
        ScanStatus.ERROR: timedelta(minutes=90),
        ScanStatus.CANCELLED: timedelta(seconds=90),
    }
    assert str(policy) == "Complete=30d,Error=90m,Cancelled=90s"
    assert set(RetentionPolicy.parse([f"{s}=1m" for s in TERMINAL_STATUSES]).ages) == TERMINAL_STATUSES


def test_no_rule_keeps_everything_forever() -> None:
    policy = RetentionPolicy.parse([])

    assert not policy.is_enabled
    assert policy.cutoffs(datetime.now(UTC)) == {}
    assert Settings().retention == ()
    assert str(policy) == "keep forever"


@pytest.mark.parametrize(
    "rule",
    ["Complete", "Complete=", "Complete=30", "Complete=30w", "Complete=-1d", "Complete=0s", "Accepted=1d",
     "Running=1d", "Done=1d", "Complete=1d=2d"],
)  # fmt: skip
def test_a_bad_rule_is_refused(rule: str) -> None:
    with pytest.raises(ValueError):
        RetentionPolicy.parse([rule])


def test_a_status_named_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        RetentionPolicy.parse(["Complete=1d", "complete=2d"])


def test_settings_refuse_a_bad_policy_naming_the_variable() -> None:
    assert Settings.from_env({"SCANQ_RETENTION": "Complete=30d,Error=90d"}, read_plugins=False).retention == (
        "Complete=30d",
        "Error=90d",
    )
    with pytest.raises(ConfigError, match="SCANQ_RETENTION") as caught:
        Settings.from_env({"SCANQ_RETENTION": "Complete=30d,Accepted=1d"}, read_plugins=False)
    assert caught.value.setting == "retention"


def test_cutoffs_and_pass_interval_follow_the_ages() -> None:
    now = datetime(2025, 1, 31, 12, tzinfo=UTC)
    week = RetentionPolicy.parse(["Complete=7d", "Error=1h"])
    seconds = RetentionPolicy.parse(["Complete=20s"])
    tiny = RetentionPolicy.parse(["Cancelled=1s"])

    assert week.cutoffs(now) == {
        ScanStatus.COMPLETE: now - timedelta(days=7),
        ScanStatus.ERROR: now - timedelta(hours=1),
    }
    assert week.interval_s == MAX_INTERVAL_S
    assert seconds.interval_s == 5.0
    assert tiny.interval_s == MIN_INTERVAL_S

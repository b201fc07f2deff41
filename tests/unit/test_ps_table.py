"""``traincheck-ps`` keeps the script's name visible however deep the checkout is."""

from __future__ import annotations

from traincheck.cli.attach import shorten_command


def test_short_command_is_shown_whole() -> None:
    assert shorten_command(["train.py", "--steps", "3"]) == "train.py --steps 3"


def test_deep_paths_are_reduced_to_file_names_before_truncation() -> None:
    deep = "/check/work/main/tests/integration/scripts/e2e_slow_train.py"
    shown = shorten_command([deep, "--steps", "300", "--sleep-s", "0.01"])
    assert shown == "e2e_slow_train.py --steps 300 --sleep-s 0.01"


def test_option_values_with_slashes_are_kept() -> None:
    deep = "/a/very/long/path/that/goes/on/and/on/and/on/train.py"
    shown = shorten_command([deep, "--data=/x/y", "--epochs", "1"])
    assert shown == "train.py --data=/x/y --epochs 1"


def test_overlong_commands_are_cut_with_an_ellipsis() -> None:
    shown = shorten_command(["train.py", *(["--flag"] * 30)], limit=40)
    assert len(shown) == 40 and shown.endswith("...")

"""check_submit_options: fal's queue options checked before anything is sent, one frozen SubmitOptions out."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.models.submit_options import SubmitOptions
from airflow_provider_sam3.operators.preflight import check_submit_options


def test_defaults_ask_nothing_special():
    assert check_submit_options() == SubmitOptions()


def test_good_options_come_back_checked_and_frozen():
    options = check_submit_options(
        priority="low",
        start_timeout=600,
        hint="gpu-a",
        webhook_url="https://hooks.example/fal?x=1",
        media_expires_in="1d",
        store_io=False,
    )
    assert options == SubmitOptions("low", 600, "gpu-a", "https://hooks.example/fal?x=1", 86400, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.priority = "normal"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("given", "expected"),
    [(60, 60), ("3600", 3600), (timedelta(hours=2), 7200), ("immediate", 60), ("30d", 2592000), (None, None)],
)
def test_media_lifetimes(given, expected):
    assert check_submit_options(media_expires_in=given).media_expires_in == expected


@pytest.mark.parametrize(
    ("options", "field", "says"),
    [
        ({"priority": "low"}, "priority", "after every normal request of every fal user"),
        ({"priority": "urgent"}, "priority", "allowed: normal, low"),
        ({"priority": "low", "start_timeout": 1}, "start_timeout", "above 1"),
        ({"start_timeout": float("nan")}, "start_timeout", "above 1"),
        ({"start_timeout": float("inf")}, "start_timeout", "above 1"),
        ({"start_timeout": True}, "start_timeout", "above 1"),
        ({"start_timeout": 8 * 86400}, "start_timeout", "at most a week"),
        ({"hint": ""}, "hint", "printable ASCII"),
        ({"hint": "gpu\r\nX-Other: 1"}, "hint", "printable ASCII"),
        ({"hint": " gpu"}, "hint", "without spaces at either end"),
        ({"hint": "x" * 257}, "hint", "1 to 256 characters"),
        ({"hint": 7}, "hint", "printable ASCII"),
        ({"webhook_url": "example.com/hook"}, "webhook_url", "an http(s) URL with a host"),
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url", "an http(s) URL with a host"),
        ({"webhook_url": "https://e.com/" + "a" * 2048}, "webhook_url", "at most 2048"),
        ({"media_expires_in": "never"}, "media_expires_in", "leave it None"),
        ({"media_expires_in": "2h"}, "media_expires_in", "immediate, 1h, 1d, 7d, 30d, 1y"),
        ({"media_expires_in": 59}, "media_expires_in", "at least 60"),
        ({"media_expires_in": 90.5}, "media_expires_in", "whole number"),
        ({"media_expires_in": True}, "media_expires_in", "boolean"),
        ({"media_expires_in": float("nan")}, "media_expires_in", "NaN"),
        ({"store_io": "false"}, "store_io", "True or False"),
        ({"store_io": 0}, "store_io", "True or False"),
    ],
)
def test_bad_options_are_refused_naming_the_field_and_what_it_takes(options, field, says):
    with pytest.raises(InputValidationError) as caught:
        check_submit_options(**options)
    assert caught.value.field == field
    assert says in str(caught.value), str(caught.value)

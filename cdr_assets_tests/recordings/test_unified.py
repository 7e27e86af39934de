"""The unified-recordings contract: keys, sidecars, offsets, backoff (pure, no storage)."""

from datetime import UTC, date, datetime, timedelta

import pytest

from cdr_assets.recordings.generate import format_offset
from cdr_assets.recordings.merges import next_attempt
from cdr_assets.recordings.unified import agent_recording, call_end_offset, parse_sidecar

PREFIX = "agent-recordings/"


def test_agent_recording_keys():
    rec = agent_recording(f"{PREFIX}2024/03/05/agent-7/c-1.mp4", PREFIX)
    assert rec is not None and (rec.day, rec.agent_id, rec.contact_id) == (date(2024, 3, 5), "agent-7", "c-1")
    assert rec.sidecar_key == f"{PREFIX}2024/03/05/agent-7/c-1.json"
    assert rec.recording_key == "unified-recordings/2024/03/05/agent-7/c-1/recording.mp4"
    assert rec.thumbnail_key == "unified-recordings/2024/03/05/agent-7/c-1/thumbnail.png"
    for bad in (
        f"{PREFIX}2024/03/05/agent-7/c-1.json",  # a sidecar
        f"{PREFIX}2024/02/30/agent-7/c-1.mp4",  # not a day
        f"{PREFIX}2024/03/05/c-1.mp4",  # no agent folder
        "other/2024/03/05/agent-7/c-1.mp4",  # another prefix
        f"{PREFIX}2024/03/05/agent-7/c-1/recording.mp4",
    ):
        assert agent_recording(bad, PREFIX) is None, bad


def test_sidecar_with_call_end_offset():
    assert parse_sidecar(b'{"call_end_offset": "00:01:02.250"}').call_end_offset == 62.25
    assert parse_sidecar(b'{"call_end_offset": "01:00:00"}').call_end_offset == 3600
    assert call_end_offset(parse_sidecar(b'{"call_end_offset": "00:00:03"}'), None) == 3.0


def test_sidecar_with_recording_start_uses_the_disconnect_time():
    started = parse_sidecar(b'{"recording_started_at": "2024-03-05T10:00:00.500Z"}')
    assert started.recording_started_at == datetime(2024, 3, 5, 10, 0, 0, 500000, tzinfo=UTC)
    disconnect = datetime(2024, 3, 5, 10, 2, 0)  # naive: UTC, as DuckDB returns it
    assert call_end_offset(started, disconnect) == 119.5
    naive = parse_sidecar(b'{"recording_started_at": "2024-03-05T10:00:00"}')  # no zone: UTC
    assert call_end_offset(naive, disconnect) == 120.0
    zoned = parse_sidecar(b'{"recording_started_at": "2024-03-05T11:00:00+01:00"}')
    assert call_end_offset(zoned, disconnect) == 120.0
    with pytest.raises(ValueError, match="DisconnectTimestamp"):
        call_end_offset(started, None)
    with pytest.raises(ValueError, match="after the call ended"):
        call_end_offset(started, datetime(2024, 3, 5, 9, 59))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "neither"),
        (b'{"call_end_offset": 12}', "must be a string"),
        (b'{"call_end_offset": "12 seconds"}', "HH:MM:SS"),
        (b'{"call_end_offset": "00:61:00"}', "out of range"),
        (b'{"recording_started_at": "yesterday"}', "not ISO 8601"),
    ],
)
def test_bad_sidecars_say_why(data, reason):
    with pytest.raises(ValueError, match=reason):
        parse_sidecar(data)


def test_offsets_round_trip_and_backoff_grows():
    for seconds in (0.0, 1.5, 62.25, 3723.001):
        text = format_offset(seconds)
        sidecar = parse_sidecar(f'{{"call_end_offset": "{text}"}}'.encode())
        assert sidecar.call_end_offset == pytest.approx(seconds)
    now = datetime(2024, 1, 1)
    waits = [next_attempt(now, n, 300) - now for n in (1, 2, 3)]
    assert waits == [timedelta(seconds=300), timedelta(seconds=1200), timedelta(seconds=4800)]

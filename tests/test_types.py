import pytest

from mcr.types import TimeSpan, TimeSpanError, Usage, format_time, parse_time


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1:02:03", 3723.0),
        ("02:03", 123.0),
        ("75.5", 75.5),
        ("0", 0.0),
        ("00:00:01.5", 1.5),
        ("75:30", 4530.0),
        ("12s", 12.0),
        (" 3 ", 3.0),
        (42, 42.0),
        (2.25, 2.25),
    ],
)
def test_parse_time(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "abc", "1:2:3:4", "-5", "1:75", "1:75:00", None, True, float("nan"), -1])
def test_parse_time_rejects(bad):
    with pytest.raises(TimeSpanError):
        parse_time(bad)


@pytest.mark.parametrize(
    "value, start, end",
    [
        ("00:02-00:04", 2, 4),
        ("1:02:03-1:05:00", 3723, 3900),
        ("2-4", 2, 4),
        ("2.5 - 4.25", 2.5, 4.25),
        ("00:00:02.0–00:00:04.0", 2, 4),
        ("2 to 4", 2, 4),
        ("[2, 4]", 2, 4),
        ([2, 4], 2, 4),
        ((2, 4), 2, 4),
        ({"start": 2, "end": 4}, 2, 4),
        ({"start": "00:02", "end": "00:04"}, 2, 4),
        ('{"start": 2, "end": 4}', 2, 4),
        (TimeSpan(2, 4), 2, 4),
    ],
)
def test_span_parse(value, start, end):
    span = TimeSpan.parse(value)
    assert (span.start, span.end) == (start, end)


@pytest.mark.parametrize("bad", ["4-2", "00:10-00:05", [5, 1], {"start": 3}, "2", "a-b", [1, 2, 3], 7, "1-2-3"])
def test_span_rejects(bad):
    with pytest.raises(TimeSpanError):
        TimeSpan.parse(bad)


def test_end_before_start_message_is_clear():
    with pytest.raises(TimeSpanError, match="ends before it starts"):
        TimeSpan.parse("00:10-00:05")


def test_clamp():
    assert TimeSpan(5, 20).clamp(12.5) == TimeSpan(5, 12.5)
    assert TimeSpan(0, 3).clamp(12.5) == TimeSpan(0, 3)
    assert TimeSpan(30, 40).clamp(12.5) == TimeSpan(12.5, 12.5)


def test_format():
    assert format_time(3723.25) == "01:02:03.2"  # 37232.5 tenths round half to even
    assert format_time(0) == "00:00:00.0"
    assert format_time(59.96) == "00:01:00.0"
    assert str(TimeSpan(2, 4)) == "00:00:02.0-00:00:04.0"
    assert TimeSpan.parse(str(TimeSpan(61.5, 3725.2))) == TimeSpan(61.5, 3725.2)


def test_span_math():
    a, b = TimeSpan(0, 10), TimeSpan(5, 15)
    assert a.overlaps(b) and a.iou(b) == pytest.approx(5 / 15)
    assert a.duration == 10 and a.middle == 5 and a.contains(10)
    assert not TimeSpan(0, 1).overlaps(TimeSpan(2, 3))


def test_usage_adds():
    u = Usage(10, 2, 1) + Usage(5, 1, 1)
    assert (u.input_tokens, u.output_tokens, u.model_calls, u.total_tokens) == (15, 3, 2, 18)
    assert Usage.from_dict(u.to_dict()) == u

"""Spark's timestamps, read and written in plain Python, as the stream's validate and encode do.

``event_time`` is epoch milliseconds when it is 1 to 15 digits (optionally
negative), else it is cast to a timestamp by Spark's string cast
(``stringToTimestamp``: ``yyyy[-m[m][-d[d]]][( |T)h[h]:m[m][:s[s][.f...]][zone]]``,
a time alone meaning today, zones such as ``Z``, ``+01:00``, ``-0530``,
``UTC``, ``GMT+2``, ``EST``, ``Europe/Paris``), in the session time zone UTC.
Timestamps are kept as epoch microseconds (years beyond 9999 included) and
written as Spark's ``date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")`` writes them.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

EPOCH_MILLIS = re.compile(r"-?[0-9]{1,15}")
_OFFSET = re.compile(r"([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?")
# java.time.ZoneId.SHORT_IDS
SHORT_IDS = {
    "ACT": "Australia/Darwin", "AET": "Australia/Sydney", "AGT": "America/Argentina/Buenos_Aires",
    "ART": "Africa/Cairo", "AST": "America/Anchorage", "BET": "America/Sao_Paulo", "BST": "Asia/Dhaka",
    "CAT": "Africa/Harare", "CNT": "America/St_Johns", "CST": "America/Chicago", "CTT": "Asia/Shanghai",
    "EAT": "Africa/Addis_Ababa", "ECT": "Europe/Paris", "IET": "America/Indiana/Indianapolis",
    "IST": "Asia/Kolkata", "JST": "Asia/Tokyo", "MIT": "Pacific/Apia", "NET": "Asia/Yerevan",
    "NST": "Pacific/Auckland", "PLT": "Asia/Karachi", "PNT": "America/Phoenix", "PRT": "America/Puerto_Rico",
    "PST": "America/Los_Angeles", "SST": "Pacific/Guadalcanal", "VST": "Asia/Ho_Chi_Minh",
    "EST": "-05:00", "MST": "-07:00", "HST": "-10:00",
}
_EPOCH_DAYS = dt.date(1970, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000


def _ws_or_control(c: str) -> bool:
    return c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F


def _valid_digits(segment: int, digits: int) -> bool:
    return (
        segment == 6
        or (segment == 0 and 4 <= digits <= 6)
        or (segment == 7 and digits <= 2)
        or (segment not in (0, 6, 7) and 0 < digits <= 2)
    )


def _parse_segments(s: str) -> tuple[list[int], str | None, bool] | None:
    """Spark's ``parseTimestampString``: segments, zone text, time only; None when it does not parse."""
    segments = [1, 1, 1, 0, 0, 0, 0, 0, 0]
    j, end = 0, len(s)
    while j < end and _ws_or_control(s[j]):
        j += 1
    while end > j and _ws_or_control(s[end - 1]):
        end -= 1
    if j == end:
        return None
    i = value = digits = digits_milli = 0
    just_time = False
    tz: str | None = None
    year_sign: int | None = None
    if s[j] in "+-":
        year_sign = -1 if s[j] == "-" else 1
        j += 1
    while j < end:
        b = s[j]
        if not ("0" <= b <= "9"):
            if j == 0 and b == "T":
                just_time = True
                i += 3
            elif i < 2:
                if b == "-" or (i == 0 and b == ":" and year_sign is None):
                    if b == ":":
                        just_time = True
                        if not _valid_digits(3, digits):
                            return None
                        segments[3] = value
                        i = 4
                    else:
                        if not _valid_digits(i, digits):
                            return None
                        segments[i] = value
                        i += 1
                    value = digits = 0
                else:
                    return None
            elif i in (2, 3, 4):
                if not ((i == 2 and b in " T") or (i in (3, 4) and b == ":")) or not _valid_digits(i, digits):
                    return None
                segments[i] = value
                value = digits = 0
                i += 1
            elif i in (5, 6):
                if not _valid_digits(i, digits):
                    return None
                segments[i] = value
                value = digits = 0
                i += 1
                if not (b == "." and i == 6):
                    tz = s[j:end]
                    j = end - 1
                if i == 6 and b != ".":
                    i += 1
            else:
                if i < len(segments) and b in ": ":
                    if not _valid_digits(i, digits):
                        return None
                    segments[i] = value
                    value = digits = 0
                    i += 1
                else:
                    return None
        else:
            if i == 6:
                digits_milli += 1
            if i != 6 or digits < 6:
                value = value * 10 + int(b)
            digits += 1
        j += 1
    if not _valid_digits(i, digits):
        return None
    segments[i] = value
    while digits_milli < 6:
        segments[6] *= 10
        digits_milli += 1
    segments[0] *= year_sign or 1
    return segments, tz, just_time


def _zone(text: str) -> dt.tzinfo:
    """``ZoneId.of`` as Spark calls it (after its ``+h:`` and ``:m`` fix-ups); ValueError when unknown."""
    text = re.sub(r"^([+-])(\d):", r"\g<1>0\2:", text.strip(), count=1)
    text = re.sub(r"([+-])(\d\d):(\d)$", r"\g<1>\g<2>:0\3", text, count=1)
    text = SHORT_IDS.get(text, text)
    if text == "Z":
        return dt.timezone.utc
    for prefix in ("UTC", "GMT", "UT", ""):
        rest = text[len(prefix):] if text.startswith(prefix) else None
        if rest is None:
            continue
        if rest == "" and prefix:
            return dt.timezone.utc
        m = _OFFSET.fullmatch(rest)
        if m and (prefix or rest):
            sign = -1 if m.group(1) == "-" else 1
            h, mi, se = int(m.group(2)), int(m.group(3) or 0), int(m.group(4) or 0)
            if h > 18 or mi > 59 or se > 59 or (h == 18 and (mi or se)):
                msg = f"offset out of range: {text}"
                raise ValueError(msg)
            return dt.timezone(sign * dt.timedelta(hours=h, minutes=mi, seconds=se))
    if "/" in text:
        return ZoneInfo(text)
    msg = f"unknown zone {text!r}"
    raise ValueError(msg)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year)."""
    y -= m <= 2
    era = y // 400  # floor division: Hinnant's (y - 399) / 400 for negative years in C
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def string_to_micros(s: str, now_us: int) -> int | None:
    """Spark's ``cast(s as timestamp)`` in UTC, as epoch microseconds; None where Spark gives null."""
    parsed = _parse_segments(s)
    if parsed is None:
        return None
    seg, tz, just_time = parsed
    try:
        zone = _zone(tz) if tz is not None else dt.timezone.utc
    except (ValueError, KeyError, OSError):
        return None
    hh, mm, ss, us = seg[3], seg[4], seg[5], seg[6]
    if just_time:
        today = dt.datetime.fromtimestamp(now_us / 1e6, zone).date()
        y, mo, d = today.year, today.month, today.day
    else:
        y, mo, d = seg[0], seg[1], seg[2]
    if not (1 <= mo <= 12 and 1 <= d <= _days_in_month(y, mo) and hh < 24 and mm < 60 and ss < 60):
        return None
    if not -999_999_999 <= y <= 999_999_999:
        return None
    local_us = (_days_from_civil(y, mo, d) * 86400 + hh * 3600 + mm * 60 + ss) * 1_000_000 + us
    offset: dt.timedelta | None
    if isinstance(zone, dt.timezone):
        offset = zone.utcoffset(None)
    else:  # a region: its offset at that local time (years beyond Python's range: the nearest representable)
        yy = min(max(y, 1), 9999)
        offset = dt.datetime(yy, mo, min(d, _days_in_month(yy, mo)), hh, mm, ss, tzinfo=zone).utcoffset()
    assert offset is not None
    return local_us - int(offset.total_seconds()) * 1_000_000


def event_time_micros(raw: str | None, fallback_us: int, now_us: int) -> tuple[int | None, bool]:
    """(event time in epoch µs, whether it was given): epoch millis, else the cast; absent -> ``fallback_us``."""
    if raw is None:
        return fallback_us, False
    text = raw.strip(" ")
    if EPOCH_MILLIS.fullmatch(text):
        return int(text) * 1000, True
    return string_to_micros(text, now_us), True


def iso_millis(micros: int) -> str:
    """``date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")`` in UTC: ``+33658-...`` and ``-0044-...`` too."""
    days, rest = divmod(micros, _US_PER_DAY)
    y, m, d = _civil_from_days(days)
    ms = rest // 1000
    hh, ms = divmod(ms, 3_600_000)
    mi, ms = divmod(ms, 60_000)
    ss, ms = divmod(ms, 1000)
    year = f"+{y}" if y > 9999 else (f"-{-y:04d}" if y < 0 else f"{y:04d}")
    return f"{year}-{m:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}.{ms:03d}Z"

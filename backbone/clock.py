"""The programme's clock: instants are stored in UTC (to the millisecond, as MongoDB keeps them);
calendar days, deadlines and what people read are in Ho Chi Minh City's time."""
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")


def utcnow():
    """Now, to the millisecond as MongoDB keeps it: what a write answers is what a later read returns."""
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def local_date(instant=None):
    """The calendar day in Ho Chi Minh City at `instant` (an aware datetime; now by default)."""
    return (instant or datetime.now(timezone.utc)).astimezone(LOCAL).date()


def local_midnight(day):
    """The instant (UTC) a local calendar day begins."""
    return datetime.combine(day, time(), LOCAL).astimezone(timezone.utc)


def shown(moment, pattern="%d/%m/%Y %H:%M"):
    """An instant as people here read it: local time, day first."""
    return moment.astimezone(LOCAL).strftime(pattern)

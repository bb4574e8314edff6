"""MQTT's naming rules for topics, so a bad topic setting fails the start, not a publish.

A topic *name* (where streamd publishes) has no wildcards; a topic *filter* (what it
subscribes to) may have ``+`` as a whole level and ``#`` as the whole last level, and may be
a shared subscription ``$share/<group>/<filter>``. Neither may be empty, hold NUL or exceed
65,535 bytes of UTF-8 (MQTT 3.1.1 and 5, section 4.7). Each check returns its argument or
raises ``ValueError`` saying what is wrong, as pydantic validators do.
"""

from __future__ import annotations

MAX_TOPIC_BYTES = 65535


def _common(topic: str, what: str) -> None:
    if not topic:
        raise ValueError(f"{what} must not be empty")
    if "\0" in topic:
        raise ValueError(f"{what} must not contain NUL")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid UTF-8") from None
    if size > MAX_TOPIC_BYTES:
        raise ValueError(f"{what} is longer than {MAX_TOPIC_BYTES} bytes")


def check_topic_name(topic: str) -> str:
    """A topic streamd publishes to (a prefix: ``/<stream>`` is appended).

    >>> check_topic_name("streamd/alerts")
    'streamd/alerts'
    >>> check_topic_name("streamd/#")
    Traceback (most recent call last):
    ...
    ValueError: a topic name must not contain the wildcards + or # ('streamd/#')
    """
    _common(topic, "a topic name")
    if "+" in topic or "#" in topic:
        raise ValueError(f"a topic name must not contain the wildcards + or # ({topic!r})")
    return topic


def check_topic_filter(topic: str) -> str:
    """A topic filter to subscribe to, shared subscriptions included.

    >>> check_topic_filter("$share/streamd/sensors/+/temp")
    '$share/streamd/sensors/+/temp'
    >>> check_topic_filter("sensors/#/x")
    Traceback (most recent call last):
    ...
    ValueError: '#' must be the whole last level of a topic filter ('sensors/#/x')
    """
    _common(topic, "a topic filter")
    levels = topic.split("/")
    if levels[0] == "$share":
        if len(levels) < 3 or not levels[1] or "+" in levels[1] or "#" in levels[1]:
            raise ValueError(
                f"a shared subscription is $share/<group>/<filter>, with a group name "
                f"and no wildcards in it ({topic!r})"
            )
        levels = levels[2:]
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be the whole last level of a topic filter ({topic!r})")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level of a topic filter ({topic!r})")
    return topic

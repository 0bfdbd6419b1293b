"""The rules of spec §16 on a whole configuration document (pure, no database)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cloudbackup.domain.configurations import (
    ConfigurationDraft,
    Notification,
    PathItem,
    ScheduleInput,
    check_paths,
    check_rules,
)


def folder(path: str) -> PathItem:
    return PathItem("folder", path)


def file(path: str) -> PathItem:
    return PathItem("file", path)


EMAIL = Notification("email", "email@example.com", True, True)

# The spec's example that satisfies every rule (§16.2).
SPEC_INCLUSIONS = (folder("/web/"), file("/etc/web/app.conf"))
SPEC_EXCLUSIONS = (folder("/web/cache/"), file("/web/cache.jpg"))


def draft(**overrides: Any) -> ConfigurationDraft:
    base = ConfigurationDraft(
        name="Every Other Hour Configuration",
        enabled=True,
        schedule=ScheduleInput(["RRULE:FREQ=HOURLY;INTERVAL=2"], "US/Central"),
        retention_days=30,
        inclusions=SPEC_INCLUSIONS,
        exclusions=SPEC_EXCLUSIONS,
        notifications=(EMAIL,),
    )
    return replace(base, **overrides)


def test_the_spec_example_satisfies_every_rule() -> None:
    assert check_rules(draft()) == []
    assert check_rules(draft(schedule=None, exclusions=(), retention_days=0)) == []


# -- inclusions -------------------------------------------------------------------------------


def test_inclusion_rule_1_no_two_inclusions_with_the_same_path() -> None:
    assert check_paths([folder("/web/"), folder("/data/"), folder("/web/")], []) == [
        "Inclusion '/web/' is listed more than once."
    ]


def test_trailing_slash_is_not_significant() -> None:
    assert check_paths([folder("/web/"), folder("/web")], []) == [
        "Inclusion '/web' is listed more than once."
    ]
    assert check_paths([folder("/web"), folder("/web/cache/")], []) == [
        "Inclusion '/web/cache/' lies inside inclusion '/web'."
    ]


def test_inclusion_rule_2_not_the_same_path_as_an_exclusion() -> None:
    problems = check_paths([folder("/web/"), folder("/srv/")], [folder("/web")])
    assert problems == [
        "Inclusion '/web/' has the same path as exclusion '/web'.",
        "Exclusion '/web' does not lie inside any inclusion.",
    ]


def test_inclusion_rule_3_not_inside_another_inclusion() -> None:
    assert check_paths([folder("/web/"), file("/web/index.html")], []) == [
        "Inclusion '/web/index.html' lies inside inclusion '/web/'."
    ]


def test_inclusion_rule_4_not_inside_an_exclusion() -> None:
    problems = check_paths(
        [folder("/web/"), folder("/web/cache/keep/")],
        [folder("/web/cache/")],
    )
    assert problems == [
        "Inclusion '/web/cache/keep/' lies inside inclusion '/web/'.",
        "Inclusion '/web/cache/keep/' lies inside exclusion '/web/cache/'.",
    ]


# -- exclusions -------------------------------------------------------------------------------


def test_exclusion_rule_1_no_two_exclusions_with_the_same_path() -> None:
    assert check_paths([folder("/web/")], [file("/web/a"), file("/web/a")]) == [
        "Exclusion '/web/a' is listed more than once."
    ]


def test_exclusion_rule_3_not_inside_another_exclusion() -> None:
    assert check_paths([folder("/web/")], [folder("/web/cache/"), file("/web/cache/x.jpg")]) == [
        "Exclusion '/web/cache/x.jpg' lies inside exclusion '/web/cache/'."
    ]


def test_exclusion_rule_4_every_exclusion_inside_some_inclusion() -> None:
    assert check_paths([folder("/web/")], [folder("/var/log/")]) == [
        "Exclusion '/var/log/' does not lie inside any inclusion."
    ]


def test_inside_is_component_wise() -> None:
    # `/website` shares a prefix with `/web` but is not inside it.
    assert check_paths([folder("/web")], [file("/website")]) == [
        "Exclusion '/website' does not lie inside any inclusion."
    ]
    assert check_paths([folder("/web"), folder("/website/")], []) == []


def test_only_folders_contain_things() -> None:
    assert check_paths([file("/etc/web/app.conf")], [file("/etc/web/app.conf/x")]) == [
        "Exclusion '/etc/web/app.conf/x' does not lie inside any inclusion."
    ]


def test_root_folder_contains_everything() -> None:
    assert check_paths([folder("/")], [folder("/proc/"), file("/etc/shadow")]) == []


def test_paths_are_case_sensitive() -> None:
    assert check_paths([folder("/Web/"), folder("/web/")], []) == []


# -- well-formed paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (folder("web/"), "Inclusion 'web/': the path must be absolute (start with '/')."),
        (folder(""), "Inclusion '': the path must be absolute (start with '/')."),
        (folder("C:\\web"), "Inclusion 'C:\\\\web': the path must be absolute (start with '/')."),
        (
            folder("/web//cache/"),
            "Inclusion '/web//cache/': the path contains an empty, '.' or '..' component.",
        ),
        (
            folder("/web/../etc/"),
            "Inclusion '/web/../etc/': the path contains an empty, '.' or '..' component.",
        ),
        (
            file("/web/./a"),
            "Inclusion '/web/./a': the path contains an empty, '.' or '..' component.",
        ),
        (file("/web/"), "Inclusion '/web/': a file path must not end with '/'."),
        (file("/"), "Inclusion '/': a file path must not end with '/'."),
        (
            PathItem("dir", "/web/"),
            "Inclusion '/web/': type must be 'file' or 'folder', not 'dir'.",
        ),
        (folder("/we\x00b/"), "Inclusion '/we\\x00b/': the path contains a control character."),
    ],
)
def test_malformed_paths_are_named(item: PathItem, message: str) -> None:
    assert check_paths([item], []) == [message]


def test_malformed_exclusions_are_named_too() -> None:
    assert check_paths([folder("/web/")], [folder("cache")]) == [
        "Exclusion 'cache': the path must be absolute (start with '/')."
    ]


def test_at_least_one_inclusion() -> None:
    assert check_paths([], []) == ["inclusions must name at least one file or folder to back up."]


# -- other fields -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "name must not be empty."),
        ({"name": "   "}, "name must not be empty."),
        ({"name": "a\x00b"}, "name must not contain NUL characters."),
        (
            {"retention_days": -1},
            "retention.days must be an integer from 0 (keep forever) to 36500.",
        ),
        (
            {"retention_days": 36501},
            "retention.days must be an integer from 0 (keep forever) to 36500.",
        ),
        (
            {"notifications": (Notification("email", "ops@example.com", True, False),)},
            "notifications must include at least one entry with on_failure true.",
        ),
        (
            {"notifications": ()},
            "notifications must include at least one entry with on_failure true.",
        ),
        (
            {"notifications": (EMAIL, Notification("sms", "+15551234", False, True))},
            "Notification type must be 'email', not 'sms'.",
        ),
        (
            {"schedule": ScheduleInput(["RRULE:FREQ=HOURLY"], "Nowhere/City")},
            "time_zone 'Nowhere/City' is not a name from the IANA time zone database.",
        ),
        (
            {"schedule": ScheduleInput(["RRULE:FREQ=DAILY;BYHOUR=1,2"], "UTC")},
            "Recurrence 'RRULE:FREQ=DAILY;BYHOUR=1,2': BYHOUR takes a single value.",
        ),
        (
            {"exclusions": (folder("/tmp/"),)},
            "Exclusion '/tmp/' does not lie inside any inclusion.",
        ),
    ],
)
def test_each_rule_reports_one_message(overrides: dict[str, Any], message: str) -> None:
    assert check_rules(draft(**overrides)) == [message]


@pytest.mark.parametrize(
    "address",
    ["email@example.com", "first.last+tag@sub.example.co.uk", "o'brien@example.org", "a@b.io"],
)
def test_valid_email_addresses(address: str) -> None:
    assert check_rules(draft(notifications=(Notification("email", address, False, True),))) == []


@pytest.mark.parametrize(
    "address",
    [
        "",
        "email",
        "email@",
        "@example.com",
        "email@example",
        "two@@example.com",
        "a b@example.com",
        ".dot@example.com",
        "dot.@example.com",
        "a..b@example.com",
        "email@-example.com",
        "email@example..com",
        "email@example.com\n",
        "x" * 250 + "@example.com",
    ],
)
def test_invalid_email_addresses(address: str) -> None:
    assert check_rules(draft(notifications=(Notification("email", address, False, True),))) == [
        f"Notification destination {address!r} is not an e-mail address."
    ]


def test_every_problem_is_reported_at_once() -> None:
    problems = check_rules(
        draft(name="", retention_days=-5, inclusions=(folder("rel"),), notifications=())
    )
    assert len(problems) == 4


@pytest.mark.parametrize("address", ["a@b.c", "ops@example.com", "first.last+tag@mail.example.org"])
def test_ordinary_email_addresses_are_accepted(address):
    from cloudbackup.domain.configurations import Notification, check_notifications

    notification = Notification(type="email", destination=address, on_success=True, on_failure=True)
    assert check_notifications([notification]) == []

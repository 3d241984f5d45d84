"""api.hosts: which Host headers the service answers (the DNS-rebinding guard)."""

from __future__ import annotations

import pytest

from memory_spine.api.hosts import HostCheck, split_host


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("localhost:8788", ("localhost", "8788")),
        ("[::1]:8788", ("::1", "8788")),
        ("[::1]", ("::1", None)),
        ("Memory.Example", ("memory.example", None)),
    ],
)
def test_split_host(header, expected):
    assert split_host(header) == expected


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (b"localhost", True),
        (b"localhost:8788", True),
        (b"localhost.", True),
        (b"api.localhost:1", True),
        (b"127.0.0.1:8788", True),
        (b"127.9.9.9", True),
        (b"[::1]:8788", True),
        (b"192.168.1.5:8788", True),
        (b"memory.example", True),
        (b"memory.example:9", True),
        (b"a.corp.example", True),
        (b"corp.example", True),
        (b"pinned.example:8788", True),
        (b"pinned.example:80", False),
        (b"evil.example", False),
        (b"localhost.evil.example", False),
        (b"127.0.0.1.evil.example", False),
        (b"xcorp.example", False),
        (b"\xff", False),
        (None, True),  # no Host: not a browser
    ],
)
def test_loopback_names_ip_literals_and_configured_names_only(header, allowed):
    check = HostCheck(["memory.example", ".corp.example", "pinned.example:8788"])
    assert check.allows(header) is allowed


def test_the_bind_name_is_allowed_and_a_star_turns_the_check_off():
    assert HostCheck([], bind_host="box.lan").allows(b"box.lan:8788")
    assert not HostCheck([], bind_host="0.0.0.0").allows(b"box.lan:8788")
    assert HostCheck(["*"]).allows(b"evil.example")

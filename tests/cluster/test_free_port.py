"""The test cluster's port picker never hands out one port twice (two Ray components told to
share a port refuse to start)."""

import socket

from tests.cluster import raycluster


def test_a_port_the_os_gives_again_is_not_handed_out_twice(monkeypatch):
    given = iter([40001, 40001, 40001, 40002])

    class Socket(socket.socket):
        def getsockname(self):
            return ("127.0.0.1", next(given))

    monkeypatch.setattr(raycluster, "_HANDED_OUT", set())
    monkeypatch.setattr(raycluster.socket, "socket", Socket)
    assert [raycluster.free_port(), raycluster.free_port()] == [40001, 40002]


def test_many_ports_are_distinct_and_bindable():
    ports = [raycluster.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))

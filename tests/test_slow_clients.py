"""Slow and hostile clients against the server as scripts/run.sh starts it (bench/slow_clients.py at small scale)."""

from __future__ import annotations

import pytest

from bench import slow_clients

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    running = slow_clients.start(trained.store, tmp_path_factory.mktemp("slow-clients"))
    yield running
    slow_clients.stop(running)


@pytest.mark.parametrize(
    ("attack", "connections", "health_bound"),
    [
        ("header tricklers", 40, 1.0),
        ("lingering closers", 50, 1.0),
        # Each slow reader's upload is 10,000 students of real CPU work, done beside the event loop: /health waits
        # for its turns at the interpreter lock, seconds on a loaded 2-core machine (docs/benchmarks.md).
        ("slow readers of 10k-row answers", 12, 5.0),
        ("stalled bodies", 100, 1.0),
    ],
)
def test_health_and_a_class_list_are_answered_during_the_attack(server, attack, connections, health_bound):
    result = slow_clients.run_attack(server, attack, connections, seconds=12)
    assert not result.failures, result
    assert result.health_max < health_bound, result
    assert result.class_max < 2.0, result
    assert result.killed == 0, result


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("comma-only header", slow_clients.COMMA_HEADER),
        ("class list of bad rows", slow_clients.class_list(10_000, bad=True)),
    ],
)
def test_a_burst_of_large_bodies_costs_a_bounded_memory_given_back(server, name, body):
    burst = slow_clients.run_burst(server, name, body, parallel=16, wait=30)
    assert burst.worst_growth < 300 * slow_clients.MB, burst
    assert all(seconds < 30 for seconds in burst.back_after.values()), burst
    assert set(burst.statuses) <= {200, 413, 503}, burst  # a clean answer each, a refusal at worst


def test_pipelined_requests_on_one_connection_are_each_answered(server):
    import socket
    import time

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        answer, deadline = b"", time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3, answer[:500]
    assert b'"model_version"' in answer  # /ready's answer, in its place among the others

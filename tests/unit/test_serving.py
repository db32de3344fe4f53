"""A server's listening socket, bound before the server starts, and the port chosen for one (exchange.serving)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from exchange import serving
from exchange.errors import ConfigurationError
from exchange.serving import CHOSEN_PORTS, KEPT_PORTS, free_port, listening_socket


def test_connections_accepted_on_the_listening_socket_send_small_writes_at_once() -> None:
    """TCP_NODELAY, inherited by every accepted connection: without it an answer written in two
    parts (head, then body) waits for the client's delayed ACK, 40 ms a request on Linux."""
    with listening_socket("127.0.0.1", 0) as listener:
        listener.listen()
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_an_address_in_use_is_named_in_one_error() -> None:
    with listening_socket("127.0.0.1", 0) as holder:
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigurationError) as refused:
            listening_socket("127.0.0.1", port, name="sandbox wallet-pay")
    assert str(refused.value) == (
        f"sandbox wallet-pay cannot listen on 127.0.0.1:{port}: the address is already in use; "
        "stop what listens there or choose another port"
    )


def test_an_address_this_machine_does_not_have_is_named_without_blaming_the_port() -> None:
    with pytest.raises(ConfigurationError) as refused:
        listening_socket("192.0.2.1", 8000, name="the gateway")  # TEST-NET-1: never a local address
    assert str(refused.value) == (
        "the gateway cannot listen on 192.0.2.1:8000: Cannot assign requested address; "
        "listen on an address of this machine (127.0.0.1, or 0.0.0.0 for all of them)"
    )


def test_a_port_chosen_ahead_is_free_and_never_one_an_outgoing_connection_could_take() -> None:
    """A port from the ephemeral range can become a connection's source port before the server
    binds it; free_port chooses below that range, so only another server could take it."""
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(50)}
    assert all(CHOSEN_PORTS.start <= port < min(CHOSEN_PORTS.stop, first_ephemeral) for port in ports)
    assert len(ports) > 40  # chosen at random: two servers starting together rarely meet
    with listening_socket("127.0.0.1", ports.pop()) as listener:
        listener.listen()


def test_ports_kept_for_a_restart_are_never_chosen_by_default() -> None:
    """A server restarted on the same port (the demo on its declarations) takes it from
    KEPT_PORTS, which the servers started meanwhile never choose from."""
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    kept = {free_port(KEPT_PORTS) for _ in range(50)}
    assert all(KEPT_PORTS.start <= port < min(KEPT_PORTS.stop, first_ephemeral) for port in kept)
    assert not set(CHOSEN_PORTS) & set(KEPT_PORTS)


def test_a_port_something_listens_on_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with listening_socket("127.0.0.1", free_port()) as holder:
        holder.listen()
        taken = holder.getsockname()[1]
        choose = serving._port_choice.randrange
        chosen: list[int] = []

        def taken_twice_first(low: int, high: int) -> int:
            chosen.append(taken if len(chosen) < 2 else choose(low, high))
            return chosen[-1]

        monkeypatch.setattr(serving._port_choice, "randrange", taken_twice_first)
        port = free_port()
    assert chosen[:2] == [taken, taken] and port == chosen[-1] != taken

"""Free TCP ports on 127.0.0.1, for a server that a test or a bench starts as a process.

(A port found free can be taken by another program before the server binds it; the
servers of our own tests prefer ``tcp:0`` where they can say which port they got.)
"""
import socket


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports, held together while they are found so none repeats."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]

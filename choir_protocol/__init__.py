"""The sans-IO core of choir: bytes and numbers in, events and bytes out.

Nothing in this package opens a socket, starts a thread or reads a clock; time,
where it matters, is passed in by the caller.
"""

class ProtocolError(Exception):
    """The peer broke the wire protocol; the connection should be closed.

    The message says what was expected and what came, for the log.
    """

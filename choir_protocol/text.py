"""Text a peer sent, checked before it reaches a store, a log or a comparison."""


def is_text(value: str) -> bool:
    """JSON can carry lone surrogates (``"\\ud800"``), which UTF-8 cannot encode: SQLite,
    logs and ``hmac.compare_digest`` on bytes all refuse them with an exception."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

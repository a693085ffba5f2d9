"""Command-line plumbing shared by the choir programs."""
import sys

from twisted.internet import error
from twisted.python import usage

USAGE_ERROR = 2


def parse_options(options: usage.Options, argv, program: str, err=None) -> usage.Options:
    """Parse ``argv``; on a usage error, say what is wrong and which --help to read, and
    exit with status 2."""
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        words, sub = [program], options
        while getattr(sub, "subCommand", None):  # point at the subcommand's own help
            words.append(sub.subCommand)
            sub = sub.subOptions
        (err or sys.stderr).write(f"{program}: error: {e}\n(see '{' '.join(words)} --help')\n")
        raise SystemExit(USAGE_ERROR) from None
    return options


def plain_reason(failure) -> str:
    """Why a connection failed or ended, in plain words (a Failure or an exception)."""
    value = getattr(failure, "value", failure)
    if isinstance(value, error.ConnectionDone):
        return "the server closed the connection"
    if isinstance(value, error.ConnectionLost):
        return "the connection was lost"
    if isinstance(value, error.ConnectionRefusedError):
        return "connection refused: is the choir server running there, on this port?"
    if isinstance(value, error.DNSLookupError):
        return "unknown host name"
    if isinstance(value, (error.TimeoutError, error.TCPTimedOutError)):
        return "no answer"
    text = failure.getErrorMessage() if hasattr(failure, "getErrorMessage") else str(value)
    return text.strip().rstrip(".") or type(value).__name__

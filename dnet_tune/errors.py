"""One exception type for mistakes a user can fix.

Raised anywhere (config, data, search); rendered once by the CLI as a one-line message with
exit code 2, so user mistakes never show a traceback while real bugs still do.
"""


class UserError(Exception):
    """A problem with the user's input: the message says what was wrong and what to do."""

"""The subcommands of `dnet-tune`, one module each, every one declaring its flags beside its
handler (as Optuna's CLI does), so a flag and the code that reads it change together.

A command module has `HELP` (its line in `dnet-tune --help`), `add_arguments(parser)` and
`run(args) -> exit code`. Its top level imports nothing heavy: `cli.build_parser` imports every
command module to build the parser, and `dnet-tune --help` must start without torch or Ray;
whatever a handler needs it imports when it runs.
"""

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C

"""Operations tooling that is not part of training or searching: offline cluster-file checks.

Only the `cluster check` command imports this package; the core and the search never do.
"""

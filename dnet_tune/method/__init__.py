"""Difficulty-Net and the baselines, all behind one `Method` interface used by the train loop.

The method under study's name lives here, outside the registry in `methods.py` (which loads
torch), for the config's default, the search's default methods and the report's comparison with
the best baseline; `methods.py` registers Difficulty-Net under it.
"""

DIFFICULTY_NET = "difficulty_net"

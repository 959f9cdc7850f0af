"""`python -m stargate.world [FOLDER]`: write the world's tasks.json and personas.json (default data/world)."""

import sys

from .data import write_data

write_data(sys.argv[1] if len(sys.argv) > 1 else "data/world")

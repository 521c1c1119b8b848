"""The aliases left at the old paths of the studies moved out of golden/ and synth/.

`golden/accuracy.py`, `golden/training.py`, `golden/bench.py`, `golden/budget.py` and
`synth/scaling.py` moved to `studies/` (issue 15's layout). For one release the old names still
work: importing one gives the very module under `studies/` (the same object, so a patch of it
reaches the study), and `python -m golden.accuracy` runs the study after a one-line note on
stderr. Nothing in the tree uses the old names; tests/test_explore.py checks that the aliases
hold.
"""

import importlib
import sys


def alias(namespace, new):
    """Make the module whose globals are `namespace` an alias of module `new`; run as a script,
    run `new.main()` instead, after a note naming the new command."""
    module = importlib.import_module(new)
    spec = namespace.get("__spec__")
    old = spec.name if spec is not None else namespace["__name__"]
    if namespace["__name__"] == "__main__":
        print(f"{old} moved to {new}: run `python -m {new}` (the old name goes after one release)",
              file=sys.stderr)
        sys.exit(module.main())
    sys.modules[old] = module

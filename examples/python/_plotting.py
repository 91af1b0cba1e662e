"""matplotlib for the examples, imported at its first use rather than with the script, so that
`--help` (and a run that fails on its arguments) works without it.

    from _plotting import plt      # then plt.subplots(...) as usual: pyplot on the Agg backend

matplotlib is in the package's `[examples]` extra: pip install 'swiftddpm[examples]'.
"""

from __future__ import annotations

import sys
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no window); exits with a hint if
    matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        sys.exit("this example draws its plots with matplotlib: pip install matplotlib "
                 "(or pip install 'swiftddpm[examples]')")
    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


class _LazyPyplot:
    """Stands for matplotlib.pyplot; imports it when an attribute is first read."""

    def __getattr__(self, name: str) -> Any:
        return getattr(pyplot(), name)


plt = _LazyPyplot()

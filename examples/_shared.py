"""What every example shares: its command line, its results table, its figure.

Each example is a script: ``python examples/<name>.py`` trains on data that ships with scikit-learn
(or that it generates), prints a small results table and, with ``--plot FILE``, saves a figure.
``--quick`` trains for a fraction of the steps (CI runs every example that way).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few steps only (a smoke test: CI runs this)")
    parser.add_argument("--plot", metavar="FILE", help="save the figure as FILE (PNG)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the data split and the initial weights")
    return parser.parse_args()


def print_table(title: str, headers, rows) -> None:
    """A plain-text table: the title, a header, a rule, and the rows (floats with 4 digits)."""
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(title)
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def save_figure(path: str | None, draw) -> None:
    """Call ``draw(plt)`` and save the figure to ``path`` (nothing without a path)."""
    if not path:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.figsize": (6.4, 3.6), "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})
    draw(plt)
    plt.tight_layout()
    plt.savefig(path)
    plt.close("all")
    print(f"figure: {path}")


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start

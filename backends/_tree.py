"""Nested containers of arrays (pytrees) for the adapters that have no pytree library of their own.

A tree is an array (a leaf), None (no leaf), or a tuple, list or dict of trees; dict keys are
visited in sorted order, as ``jax.tree_util`` does. The JAX adapter uses ``jax.tree_util`` instead,
so that every JAX pytree (optax states, Flax dicts) works there.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["flatten", "stack"]


def flatten(tree) -> tuple[list, Callable[[list], object]]:
    """``(leaves, rebuild)``: the leaves in order, and a function that builds a tree of the same
    structure from a list of new leaves."""
    if tree is None:
        return [], lambda leaves: None
    if isinstance(tree, (tuple, list)):
        parts = [flatten(t) for t in tree]
        kind = type(tree)

        def rebuild_sequence(leaves):
            out, at = [], 0
            for part_leaves, part_rebuild in parts:
                out.append(part_rebuild(leaves[at: at + len(part_leaves)]))
                at += len(part_leaves)
            return kind(out) if kind in (tuple, list) else kind(*out)  # namedtuples take positions

        return [leaf for part_leaves, _ in parts for leaf in part_leaves], rebuild_sequence
    if isinstance(tree, dict):
        keys = sorted(tree)
        values, rebuild_values = flatten([tree[k] for k in keys])
        return values, lambda leaves: dict(zip(keys, rebuild_values(leaves)))
    return [tree], lambda leaves: leaves[0]


def stack(xp, trees: list):
    """Trees of one structure stacked leaf by leaf along a new leading axis (None stays None)."""
    if not trees:
        return None
    _, rebuild = flatten(trees[0])
    columns = list(zip(*(flatten(t)[0] for t in trees)))
    return rebuild([xp.stack(list(column), axis=0) for column in columns])

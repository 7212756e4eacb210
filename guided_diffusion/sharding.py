"""Spreading work items over MPI ranks in balance, independent of what they are."""

from __future__ import annotations


def round_robin(num_items: int, world_size: int, offset: int = 0) -> list[list[int]]:
    """Indices 0..num_items-1 dealt to ``world_size`` ranks, starting at rank ``offset % world_size``.

    Carrying ``offset`` (the number of items dealt before) across consecutive
    calls keeps the whole run balanced to within one item per rank, even when
    each call has fewer items than ranks.

    Returns:
        One list of indices per rank (possibly empty), in increasing order.
    """
    if world_size < 1:
        raise ValueError("world_size must be at least 1")
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for item in range(num_items):
        shares[(offset + item) % world_size].append(item)
    return shares


def batches(items: list, batch_size: int) -> list[list]:
    """Consecutive chunks of at most ``batch_size`` items."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]

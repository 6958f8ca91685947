"""Nearest-neighbour distances in bounded memory, shared by PatchCore's search and the coreset."""

from __future__ import annotations

import torch


def nearest_sq_distance(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor,
                        max_elems: int = 1_000_000) -> torch.Tensor:
    """Squared Euclidean distance of each (Q, D) query to its nearest (M, D) bank row.

    The bank is walked in chunks of ``max_elems // Q`` rows: a 4 MB distance block stays in cache
    for the ``amin`` that follows the matrix product (measured 2.3x faster than 16 MB blocks for
    1024 queries against a 10k bank on two cores). While tracing (an ONNX export) it takes
    ``blockwise_sq_distance``, whose blocks do not depend on the number of queries.
    """
    if torch.jit.is_tracing():  # any head traced to ONNX gets the batch-free search
        return blockwise_sq_distance(queries, bank, bank_sq)
    q_sq = (queries * queries).sum(1, keepdim=True)
    best = torch.full((queries.shape[0],), float("inf"), dtype=queries.dtype,
                      device=queries.device)
    step = max(1, max_elems // max(1, queries.shape[0]))
    for s in range(0, bank.shape[0], step):
        d = torch.addmm(bank_sq[s:s + step].unsqueeze(0), queries, bank[s:s + step].T, alpha=-2.0)
        best = torch.minimum(best, d.amin(dim=1))
    return (best + q_sq[:, 0]).clamp_min(0)


def nearest_distance(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor,
                     max_elems: int = 1_000_000) -> torch.Tensor:
    """Euclidean distance of each (Q, D) query to its nearest (M, D) bank row (bounded memory)."""
    return nearest_sq_distance(queries, bank, bank_sq, max_elems).sqrt()


#: Bank rows per block of ``blockwise_distance``: the search an ONNX export traces.
EXPORT_BLOCK_ROWS = 8192


def blockwise_sq_distance(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor,
                          block_rows: int = EXPORT_BLOCK_ROWS) -> torch.Tensor:
    """``nearest_sq_distance`` with bank blocks fixed by the bank alone, for tracing (ONNX).

    ``nearest_sq_distance`` sizes its blocks (and its running minimum) from the number of
    queries, which a tracer freezes at the tracing batch: such a graph gave other batches wrong
    maps. Here nothing depends on the queries' count, so the graph keeps a free batch axis.
    """
    best = None
    for s in range(0, int(bank.shape[0]), block_rows):
        d = torch.addmm(bank_sq[s:s + block_rows].unsqueeze(0), queries,
                        bank[s:s + block_rows].T, alpha=-2.0)
        m = d.amin(dim=1)
        best = m if best is None else torch.minimum(best, m)
    return (best + (queries * queries).sum(1)).clamp_min(0)


def blockwise_distance(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor,
                       block_rows: int = EXPORT_BLOCK_ROWS) -> torch.Tensor:
    """Euclidean ``blockwise_sq_distance``."""
    return blockwise_sq_distance(queries, bank, bank_sq, block_rows).sqrt()

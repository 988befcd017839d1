"""The chunked memory passes of attest.invariants (docs/scale.md, "Memory passes") against plain formulas."""

from __future__ import annotations

import pytest
import torch

from attest.arch.assembly import Mlp
from attest.invariants import streamed as ST
from attest.invariants import terms as T


def _reference_standardise(m: torch.Tensor, drop: bool) -> torch.Tensor:
    x = m.double()
    n = x.shape[0]
    mask = ~torch.eye(n, dtype=torch.bool) if drop else torch.ones_like(x, dtype=torch.bool)
    vals = x[mask]
    z = (x - vals.mean()) / vals.std(unbiased=False)
    if drop:
        z = z * (x.numel() / vals.numel()) ** 0.5
        z.fill_diagonal_(0.0)
    return z


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("drop", [False, True])
def test_standardise_matches_float64_and_leaves_its_input_alone(dtype: torch.dtype, drop: bool) -> None:
    g = torch.Generator().manual_seed(3)
    # a large mean against the spread: the sums must not cancel it away
    m = (torch.randn(700, 700, generator=g) * 0.5 + 10.0).to(dtype)
    before = m.clone()
    z = T.standardise(m, drop_diagonal=drop, out_dtype=torch.float32)
    assert z is not None
    assert torch.equal(m, before)
    ref = _reference_standardise(m, drop)
    assert float((z.double() - ref).abs().max()) < 2e-3
    assert abs(float(z.double().mean())) < 1e-4


def test_standardise_constant_and_empty_are_none() -> None:
    assert T.standardise(torch.full((64, 64), 3.0)) is None
    assert T.standardise(torch.zeros(0, 5)) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_accumulate_is_the_sum_of_products_and_results_never_alias(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    pairs = [(torch.randn(300, 40, generator=g), torch.randn(40, 300, generator=g)) for _ in range(3)]
    acc = None
    for a, b in pairs:
        acc = T.accumulate(acc, a, b, dtype)
    assert acc is not None and acc.dtype == torch.float32
    ref = sum(a.to(dtype).double() @ b.to(dtype).double() for a, b in pairs)
    tol = 1e-4 if dtype == torch.float32 else 0.5
    assert float((acc.double() - ref).abs().max()) < tol
    # a second result built meanwhile must not share the reused product buffer
    first = T.accumulate(None, pairs[0][0], pairs[0][1], dtype)
    kept = first.clone()
    T.accumulate(None, pairs[1][0], pairs[1][1], dtype)
    assert torch.equal(first, kept)


def test_neuron_coupling_in_chunks_equals_the_whole_matrix_formula() -> None:
    g = torch.Generator().manual_seed(5)
    f, d = 1500, 96  # several chunks of CHUNK_BYTES // (16 d) neurons, the last one short
    up, down = torch.randn(f, d, generator=g), torch.randn(d, f, generator=g)
    gin, gout = torch.rand(d, generator=g) + 0.5, torch.rand(d, generator=g) + 0.5
    for center in (False, True):
        rows = down.t().double() * gout.double()
        if center:
            rows = rows - rows.mean(1, keepdim=True)
        ref = (up.double() * rows * gin.double()).sum(1)
        got = T.neuron_coupling(up, down, gin, gout, center)
        assert float((got.double() - ref).abs().max()) < 1e-4


def _mlp(f: int, d: int = 8) -> Mlp:
    return Mlp(up=torch.zeros(f, d), down=torch.zeros(d, f), gate=torch.zeros(f, d))


def test_wide_pieces_are_never_joined_and_narrow_ones_are() -> None:
    wide = ST.WIDE_ROWS
    pieces = [_mlp(100), _mlp(200), _mlp(wide), _mlp(300), _mlp(wide + 10)]
    blocks = ST._neuron_blocks(pieces, per_block=wide * 4)
    shapes = [[(p.up.shape[0], a, b) for p, a, b in blk] for blk in blocks]
    assert shapes == [[(100, 0, 100), (200, 0, 200)], [(wide, 0, wide)], [(300, 0, 300)], [(wide + 10, 0, wide + 10)]]
    # a wide piece larger than a block is cut into blocks of its own
    cut = ST._neuron_blocks([_mlp(wide * 3)], per_block=wide)
    assert [[(a, b) for _p, a, b in blk] for blk in cut] == [[(0, wide)], [(wide, 2 * wide)], [(2 * wide, 3 * wide)]]

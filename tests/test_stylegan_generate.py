"""StyleGAN2-ADA generation, truncation, class labels, style mixing, walks and their export.

All on the tiny random-weight twin (32 px, CPU): contracts, not image quality.
"""

from __future__ import annotations

import math

import pytest
import torch

from artlab.stylegan import tiny_generator, z_from_seeds
from artlab.stylegan.generate import (
    Truncation,
    class_label,
    class_w_mean,
    from_images,
    generate,
    map_to_ws,
    style_mix,
    style_mix_grid,
    synthesize,
    to_images,
    truncate,
)
from artlab.stylegan.walks import (
    WalkFrame,
    class_mix_walk,
    collect,
    frame_grid,
    lerp,
    save_walk,
    slerp,
    walk_w,
    walk_z,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: see conftest


@pytest.fixture(scope="module")
def Gc():
    g = tiny_generator(c_dim=4, seed=3)
    g.class_names = ["cat", "dog", "ship", "tree"]
    return g


# --------------------------------------------------------------------------- conventions and seeds


def test_to_images_and_back():
    raw = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 3.0]]).view(1, 1, 1, 5).repeat(1, 3, 1, 1)
    images = to_images(raw)
    assert images.dtype == torch.float32
    assert images[0, 0, 0].tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    torch.testing.assert_close(from_images(images)[..., 1:4], raw[..., 1:4])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        from_images(raw)


def test_generate_is_deterministic_and_per_seed(G):
    a = generate(G, [5, 9, 11])
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    torch.testing.assert_close(generate(G, [5, 9, 11]), a, rtol=0, atol=0)
    # a seed's image does not depend on its batch neighbours or the batch size
    torch.testing.assert_close(generate(G, [9], batch_size=1), a[1:2], rtol=0, atol=1e-5)
    torch.testing.assert_close(generate(G, z=z_from_seeds([5, 9, 11], G.z_dim), batch_size=2), a, rtol=0, atol=1e-5)
    assert (a[0] - a[1]).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="exactly one of seeds"):
        generate(G)


def test_noise_modes(G):
    const = generate(G, [1])
    r1 = generate(G, [1], noise_mode="random", noise_seed=4)
    assert (r1 - const).abs().max() > 1e-3
    torch.testing.assert_close(generate(G, [1], noise_mode="random", noise_seed=4), r1, rtol=0, atol=0)
    assert (generate(G, [1], noise_mode="random", noise_seed=5) - r1).abs().max() > 1e-3
    assert (generate(G, [1], noise_mode="none") - const).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        generate(G, [1], noise_mode="fresh")


# --------------------------------------------------------------------------- truncation


def test_psi_zero_gives_w_avg_and_cutoff_keeps_later_rows(G):
    plain = map_to_ws(G, [2, 3])
    zero = map_to_ws(G, [2, 3], truncation=0.0)
    torch.testing.assert_close(zero, G.mapping.w_avg.expand_as(zero), rtol=0, atol=1e-6)
    torch.testing.assert_close(generate(G, [2], truncation=0.0), generate(G, [7], truncation=0.0))
    cut = map_to_ws(G, [2, 3], truncation=Truncation(0.0, cutoff=3))
    torch.testing.assert_close(cut[:, :3], G.mapping.w_avg.expand(2, 3, -1), rtol=0, atol=1e-6)
    torch.testing.assert_close(cut[:, 3:], plain[:, 3:], rtol=0, atol=0)
    half = map_to_ws(G, [2, 3], truncation=0.5)
    torch.testing.assert_close(half, (plain + G.mapping.w_avg) / 2, rtol=0, atol=1e-6)
    # our truncation agrees with the network's own (official) truncation
    torch.testing.assert_close(half, G.mapping(z_from_seeds([2, 3], G.z_dim), truncation_psi=0.5))


def test_class_aware_truncation_goes_to_the_class_mean(Gc):
    mean_dog = class_w_mean(Gc, "dog")
    ws = map_to_ws(Gc, [4, 8], c="dog", truncation=Truncation(0.0, class_aware=True))
    torch.testing.assert_close(ws, mean_dog.expand_as(ws), rtol=0, atol=1e-6)
    agnostic = map_to_ws(Gc, [4], c="dog", truncation=0.0)
    torch.testing.assert_close(agnostic[0, 0], Gc.mapping.w_avg)
    assert (mean_dog - Gc.mapping.w_avg).norm() > 1e-3  # the class centre is not the global one
    with pytest.raises(ValueError, match="class-conditional"):
        map_to_ws(tiny_generator(), [1], truncation=Truncation(0.5, class_aware=True))


def test_class_w_mean_is_the_sampled_mean_and_cached(Gc):
    n = 300
    mean = class_w_mean(Gc, 1, n=n, seed=7)
    z = torch.randn(n, Gc.z_dim, generator=torch.Generator().manual_seed(7))
    expected = Gc.mapping(z, class_label(Gc, 1).repeat(n, 1))[:, 0].mean(dim=0)
    torch.testing.assert_close(mean, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(class_w_mean(Gc, 1, n=n, seed=7), mean, rtol=0, atol=0)
    assert (class_w_mean(Gc, 1, n=n, seed=8) - mean).abs().max() > 0
    assert (class_w_mean(Gc, 2, n=n, seed=7) - mean).norm() > 1e-3
    # the cache notices changed weights
    g = tiny_generator(c_dim=4, seed=3)
    before = class_w_mean(g, 1, n=50)
    with torch.no_grad():
        g.mapping.fc0.bias.add_(10.0)
    assert (class_w_mean(g, 1, n=50) - before).abs().max() > 1e-4


def test_truncate_validates():
    ws = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match="cutoff"):
        truncate(ws, torch.zeros(2), 0.5, cutoff=-1)
    with pytest.raises(ValueError, match="finite"):
        truncate(ws, torch.zeros(2), math.nan)


# --------------------------------------------------------------------------- class labels


def test_class_label_forms(Gc):
    assert class_label(Gc, 2).tolist() == [[0.0, 0.0, 1.0, 0.0]]
    assert class_label(Gc, "dog").tolist() == [[0.0, 1.0, 0.0, 0.0]]
    torch.testing.assert_close(class_label(Gc, {"cat": 7, 3: 3}), torch.tensor([[0.7, 0.0, 0.0, 0.3]]))
    torch.testing.assert_close(class_label(Gc, [1, 1, 0, 2]), torch.tensor([[0.25, 0.25, 0.0, 0.5]]))
    for bad, match in [({0: -0.1, 1: 1.1}, "≥ 0"), ([0, 0, 0, 0], "all zero"), ([1, 2], "4 numbers"),
                       (7, "out of range"), ("horse", "cat, dog, ship, tree"), ({0: math.nan}, "finite")]:
        with pytest.raises(ValueError, match=match):
            class_label(Gc, bad)
    with pytest.raises(ValueError, match="class-conditional"):
        generate(Gc, [1])
    with pytest.raises(ValueError, match="unconditional"):
        generate(tiny_generator(), [1], c=1)


def test_soft_label_70_30_is_a_convex_mix_of_the_embeddings(Gc):
    a, b = class_label(Gc, 0), class_label(Gc, 2)
    soft = class_label(Gc, {0: 0.7, 2: 0.3})
    torch.testing.assert_close(soft, 0.7 * a + 0.3 * b)
    embed = Gc.mapping.embed
    # the class embedding is affine: the mix goes in as the same mix of the two embeddings
    torch.testing.assert_close(embed(soft), 0.7 * embed(a) + 0.3 * embed(b), rtol=1e-5, atol=1e-6)
    # ... but the mapping MLP after it is not, so the soft-label w is not the mix of the ws
    wa, wb, ws = (map_to_ws(Gc, [3], c=x) for x in (a, b, soft))
    assert (ws - (0.7 * wa + 0.3 * wb)).abs().max() > 1e-4
    # the soft-label walk feeds exactly that label at t = 0.3 and is exact at the ends
    frames = list(class_mix_walk(Gc, (0, 2), 0.0, 1.0, steps=11, method="soft_label", seed=3, truncation=1.0))
    assert len(frames) == 11 and all(isinstance(f, WalkFrame) for f in frames)
    torch.testing.assert_close(frames[3].c, soft)
    torch.testing.assert_close(frames[3].ws, ws)
    assert frames[3].label.startswith("70% cat / 30% ship")
    torch.testing.assert_close(frames[0].ws, wa)
    torch.testing.assert_close(frames[-1].ws, wb)


def test_centroid_walk_is_linear_between_class_truncations(Gc):
    psi = 0.6
    frames = list(class_mix_walk(Gc, ("cat", "ship"), 0.0, 1.0, steps=5, method="centroid", seed=2,
                                 truncation=psi))
    ends = [map_to_ws(Gc, [2], c=k, truncation=Truncation(psi, class_aware=True)) for k in ("cat", "ship")]
    torch.testing.assert_close(frames[0].ws, ends[0])
    torch.testing.assert_close(frames[-1].ws, ends[1])
    torch.testing.assert_close(frames[1].ws, 0.75 * ends[0] + 0.25 * ends[1])
    torch.testing.assert_close(frames[0].image, generate(Gc, [2], c="cat",
                                                         truncation=Truncation(psi, class_aware=True)))
    # at psi = 0 the walk goes exactly between the two class centroids
    zero = list(class_mix_walk(Gc, (0, 2), steps=3, method="centroid", seed=2, truncation=0.0))
    mid = (class_w_mean(Gc, 0) + class_w_mean(Gc, 2)) / 2
    torch.testing.assert_close(zero[1].ws[0], mid.expand(Gc.num_ws, -1))
    # both methods agree at the ends, not in between
    soft = list(class_mix_walk(Gc, ("cat", "ship"), steps=5, method="soft_label", seed=2, truncation=psi))
    torch.testing.assert_close(soft[0].ws, frames[0].ws)
    assert (soft[2].ws - frames[2].ws).abs().max() > 1e-4
    with pytest.raises(ValueError, match="method"):
        next(class_mix_walk(Gc, (0, 1), method="nearest"))
    with pytest.raises(ValueError, match="c_dim"):
        next(class_mix_walk(tiny_generator(), (0, 1)))


def test_class_walk_partial_range_and_loop(Gc):
    frames = list(class_mix_walk(Gc, (1, 3), mix_from=0.2, mix_to=0.6, steps=3, loop=True, seed=1))
    assert [round(f.t, 6) for f in frames] == [0.2, 0.4, 0.6, 0.4]
    with pytest.raises(ValueError, match="mix_to"):
        next(class_mix_walk(Gc, (1, 3), mix_to=1.5))


# --------------------------------------------------------------------------- interpolation


def test_slerp_and_lerp():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 16, generator=gen), torch.randn(3, 16, generator=gen)
    for f in (slerp, lerp):
        torch.testing.assert_close(f(a, b, 0.0), a, rtol=0, atol=0)
        torch.testing.assert_close(f(a, b, 1.0), b, rtol=0, atol=0)
    torch.testing.assert_close(lerp(a, b, 0.25), 0.75 * a + 0.25 * b)
    # slerp: the norm moves linearly, the angle to a grows linearly
    t = 0.3
    s = slerp(a, b, t)
    torch.testing.assert_close(s.norm(dim=-1), 0.7 * a.norm(dim=-1) + 0.3 * b.norm(dim=-1))
    ua, ub, us = (x / x.norm(dim=-1, keepdim=True) for x in (a, b, s))
    omega = torch.arccos((ua * ub).sum(-1))
    torch.testing.assert_close(torch.arccos((ua * us).sum(-1).clamp(-1, 1)), t * omega, rtol=1e-4, atol=1e-5)
    # equal norms: constant norm (lerp would cut the corner)
    bn = b / b.norm(dim=-1, keepdim=True) * a.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(slerp(a, bn, 0.5).norm(dim=-1), a.norm(dim=-1))
    assert bool((lerp(a, bn, 0.5).norm(dim=-1) < a.norm(dim=-1) - 1e-3).all())
    # per-row t, parallel inputs
    ts = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(slerp(a, b, ts)[0], a[0])
    torch.testing.assert_close(slerp(a, b, ts)[2], b[2])
    torch.testing.assert_close(slerp(a[0], 2 * a[0], 0.5), 1.5 * a[0])


def test_loop_walks_return_to_the_start(Gc):
    for walk in (walk_z, walk_w):
        looped = list(walk(Gc, [1, 2, 3], 3, loop=True, c="dog"))
        opened = list(walk(Gc, [1, 2, 3, 1], 3, loop=False, c="dog"))
        assert len(looped) == 9 and len(opened) == 10
        for f, g in zip(looped, opened):
            torch.testing.assert_close(f.ws, g.ws)
        torch.testing.assert_close(opened[-1].image, looped[0].image)  # the frame after the last is the first
        torch.testing.assert_close(opened[-1].image, generate(Gc, [1], c="dog"))
        assert [f.index for f in looped] == list(range(9)) and looped[0].t == 0 and looped[-1].t < 1
        assert opened[-1].t == 1.0
    z_frames = list(walk_z(Gc, [1, 2], 4, loop=False, c=0))
    torch.testing.assert_close(z_frames[2].z[0], slerp(*z_from_seeds([1, 2], Gc.z_dim), 0.5))


def test_walk_w_through_given_keyframes(G):
    keys = map_to_ws(G, [4, 6], truncation=0.7)
    frames = list(walk_w(G, ws=keys, steps_per_segment=4, loop=False))
    assert len(frames) == 5
    torch.testing.assert_close(frames[2].ws, (keys[0:1] + keys[1:2]) / 2)
    torch.testing.assert_close(frames[0].image, generate(G, [4], truncation=0.7))
    with pytest.raises(ValueError, match="exactly one"):
        next(walk_w(G, [1, 2], ws=keys))
    with pytest.raises(ValueError, match="two keyframes"):
        next(walk_w(G, [1]))


# --------------------------------------------------------------------------- style mixing


def test_style_mix_takes_rows_from_the_right_source(G):
    ws_a, ws_b = map_to_ws(G, [1, 2]), map_to_ws(G, [3, 4])
    mixed = style_mix(G, ws_a, ws_b, (2, 5))
    torch.testing.assert_close(mixed[:, 2:5], ws_b[:, 2:5], rtol=0, atol=0)
    torch.testing.assert_close(mixed[:, :2], ws_a[:, :2], rtol=0, atol=0)
    torch.testing.assert_close(mixed[:, 5:], ws_a[:, 5:], rtol=0, atol=0)
    torch.testing.assert_close(style_mix(G, ws_a, ws_b, range(2, 5)), mixed)
    torch.testing.assert_close(style_mix(G, ws_a, ws_b, slice(2, 5)), mixed)
    # a single ws_b broadcasts
    one = style_mix(G, ws_a, ws_b[1:], slice(6, None))
    torch.testing.assert_close(one[:, 6:], ws_b[1:, 6:].expand(2, -1, -1))
    for bad in [(0, 99), (5, 5), "coarse"]:
        with pytest.raises((ValueError, TypeError)):
            style_mix(G, ws_a, ws_b, bad)


def test_style_mix_grid_layout(G):
    grid = style_mix_grid(G, [1, 2], [3, 4, 5], (0, 4), as_grid=False)
    assert grid.shape == (12, 3, 32, 32)
    assert float(grid[0].min()) == 1.0  # blank corner
    torch.testing.assert_close(grid[1:4], generate(G, [3, 4, 5]))
    torch.testing.assert_close(grid[4], generate(G, [1])[0])
    cell = synthesize(G, style_mix(G, map_to_ws(G, [2]), map_to_ws(G, [4]), (0, 4)))
    torch.testing.assert_close(grid[2 * 4 + 2], cell[0])  # row seed 2, column seed 4
    picture = style_mix_grid(G, [1, 2], [3, 4, 5], (0, 4))
    assert picture.shape == (1, 3, 3 * 34 + 2, 4 * 34 + 2)


# --------------------------------------------------------------------------- frames and export


def test_collect_grid_and_export(G, tmp_path):
    import imageio.v3 as iio

    frames = collect(walk_z(G, [0, 1], 3, loop=True))
    assert frames.shape == (6, 3, 32, 32)
    assert frame_grid(frames, columns=3).shape == (1, 3, 2 * 34 + 2, 3 * 34 + 2)
    assert frame_grid(walk_w(G, [0, 1], 2, loop=False), columns=3).shape == (1, 3, 34 + 2, 3 * 34 + 2)
    gif = save_walk(frames, tmp_path / "walk.gif", fps=8)
    assert iio.imread(gif, index=None).shape == (6, 32, 32, 3)
    mp4 = save_walk(walk_z(G, [0, 1], 3, loop=True), tmp_path / "walk.mp4", fps=8)
    video = iio.imread(mp4, index=None, plugin="pyav") if _has_pyav() else _read_ffmpeg(mp4)
    assert video.shape[0] == 6 and video.shape[1:3] == (32, 32)
    with pytest.raises(ValueError, match=".gif or .mp4"):
        save_walk(frames, tmp_path / "walk.avi")


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _read_ffmpeg(path):
    import imageio.v2 as imageio
    import numpy as np

    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        return np.stack([frame for frame in reader.iter_data()])
    finally:
        reader.close()


# --------------------------------------------------------------------------- settings and the one-call render


def test_truncation_settings_and_the_old_keywords(Gc):
    from artlab.stylegan.generate import as_truncation

    new = Truncation(0.5, cutoff=3, class_aware=True, n_class_samples=300)
    old = dict(truncation_psi=0.5, truncation_cutoff=3, class_aware_truncation=True, n_class_samples=300)
    assert as_truncation(0.5) == Truncation(0.5) and as_truncation(None) == Truncation()
    assert as_truncation(0.5, default=Truncation(class_aware=True)) == Truncation(0.5, class_aware=True)
    calls = {
        "map_to_ws": lambda **kw: map_to_ws(Gc, [1, 2], c="dog", **kw),
        "generate": lambda **kw: generate(Gc, [1, 2], c="dog", **kw),
        "style_mix_grid": lambda **kw: style_mix_grid(Gc, [1], [2], (0, 2), c="dog", **kw),
        "walk_z": lambda **kw: collect(walk_z(Gc, [1, 2], 2, c="dog", **kw)),
        "walk_w": lambda **kw: collect(walk_w(Gc, [1, 2], 2, c="dog", **kw)),
        "class_mix_walk": lambda **kw: collect(class_mix_walk(Gc, (0, 1), steps=3, **kw)),
    }
    for name, call in calls.items():
        with pytest.warns(DeprecationWarning, match=rf"{name}\(\).*Truncation\(psi=0.5, cutoff=3"):
            before = call(**old)
        torch.testing.assert_close(call(truncation=new), before, rtol=0, atol=0)
    with pytest.raises(TypeError, match="not both"):
        generate(Gc, [1], c=0, truncation=0.5, truncation_psi=0.5)
    with pytest.raises(TypeError, match="truncation_ps"):
        generate(Gc, [1], c=0, truncation_ps=0.5)
    bad_fields = [(dict(psi=math.inf), "finite"), (dict(cutoff=-1), "cutoff"), (dict(n_class_samples=0), "n_class")]
    for bad, match in bad_fields:
        with pytest.raises(ValueError, match=match):
            Truncation(**bad)


def test_render_is_map_style_mix_and_synthesize_in_one_call(Gc):
    from artlab.stylegan.generate import StyleMix, render

    trunc = Truncation(0.7, class_aware=True)
    out = render(Gc, [3], {0: 0.7, 1: 0.3}, truncation=trunc)
    ws = map_to_ws(Gc, [3], None, {0: 0.7, 1: 0.3}, truncation=trunc)
    torch.testing.assert_close(out.ws, ws.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(out.images, synthesize(Gc, ws), rtol=0, atol=0)
    images, mixed = render(Gc, [3, 4], "ship", truncation=0.5, style_mix=StyleMix(9, (2, 5)), noise_mode="none")
    expected = style_mix(Gc, map_to_ws(Gc, [3, 4], None, "ship", truncation=0.5),
                         map_to_ws(Gc, [9], None, "ship", truncation=0.5), (2, 5))
    torch.testing.assert_close(mixed, expected.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(images, synthesize(Gc, expected, noise_mode="none"), rtol=0, atol=0)
    torch.testing.assert_close(render(Gc, [3, 4], "ship", truncation=0.5, style_mix=(9, (2, 5)),
                                      noise_mode="none").images, images)
    z = z_from_seeds([5], Gc.z_dim)
    torch.testing.assert_close(render(Gc, z, 1).images, generate(Gc, [5], c=1), rtol=0, atol=0)


def test_no_stylegan_module_imports_style_transfer():
    import ast
    from pathlib import Path

    import artlab.stylegan as sg

    for path in Path(sg.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "artlab.transfer" or n.startswith("artlab.transfer.") for n in names), path

"""The StyleGAN2-ADA compatible generator: operators, networks, seeds, the tiny twin.

Two kinds of tests:
* contracts on the tiny random twin (always run, CPU, seconds);
* exact parity with reference tensors recorded from the official implementation, in
  ``../shared/testdata/stylegan2`` (skipped when ../shared is absent), and key/shape lists in
  ``../shared/design`` (tolerances from the README.txt files next to the tensors).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from artlab.stylegan import Generator, tiny_generator, z_from_seeds
from artlab.stylegan import ops

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TESTDATA = SHARED / "testdata" / "stylegan2"
DESIGN = SHARED / "design"
INIT_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """Run this module's small convolutions on one thread (restored afterwards).

    On the shared 2-core machine, oneDNN's multi-threaded small convolutions slow down ~50×
    when other processes compete for the cores (60 s vs 10 s for this file). The references
    allow for it: their README measures 1 vs 2 threads at <= 3.8e-6.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present (only developers' machines and CI have ../shared)")
    return path


@pytest.fixture(scope="module")
def ops_vectors() -> dict:
    return torch.load(_need(TESTDATA / "ops" / "vectors.pt"), weights_only=True)


class Reference:
    """An official-config generator with the reference weights loaded, plus its vectors."""

    def __init__(self, name: str) -> None:
        folder = _need(TESTDATA / name)
        self.config = json.loads((folder / "config.json").read_text())
        self.state_dict = torch.load(folder / "state_dict.pt", weights_only=True)
        self.vectors = torch.load(folder / "vectors.pt", weights_only=True)
        self.G = Generator(**{k: self.config[k] for k in INIT_KEYS}).eval()
        self.G.load_state_dict(self.state_dict, strict=True)


@pytest.fixture(scope="module", params=["cond32", "uncond64_skip"])
def ref(request) -> Reference:
    return Reference(request.param)


@pytest.fixture(scope="module")
def cond32() -> Reference:
    return Reference("cond32")


@pytest.fixture(scope="module")
def uncond64() -> Reference:
    return Reference("uncond64_skip")


# --------------------------------------------------------------------------- ops vs reference


def test_ops_resampling_match_reference(ops_vectors):
    v = ops_vectors
    assert max_err(ops.setup_filter([1, 3, 3, 1]), v["filter"]) == 0
    assert max_err(ops.upsample2d(v["x"], v["filter"]), v["upsample2d"]) <= 1e-5
    assert max_err(ops.downsample2d(v["x"], v["filter"]), v["downsample2d"]) <= 1e-5
    # The resnet skip: 1×1 conv with weight gain 1/sqrt(in), upsampled 2× (a true convolution).
    w = v["skip_weight"] * (1 / math.sqrt(8))
    y = ops.conv2d_resample(v["x"], w, f=v["filter"], up=2, padding=0, flip_weight=False)
    assert max_err(y, v["conv2d_resample_1x1_up2"]) <= 1e-5


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "nonfused"])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demod", [1, 0])
def test_ops_modulated_conv_matches_reference(ops_vectors, demod, up, fused):
    v = ops_vectors
    y = ops.modulated_conv2d(
        v["x"], v["modconv_weight"], v["modconv_styles"], up=up, padding=1, resample_filter=v["filter"],
        demodulate=bool(demod), flip_weight=(up == 1), fused_modconv=fused,
    )
    assert max_err(y, v[f"modconv_demod{demod}_up{up}"]) <= (1e-5 if demod else 5e-5)


def test_ops_torgb_modconv_bias_act_n2m_match_reference(ops_vectors):
    v = ops_vectors
    y = ops.modulated_conv2d(v["x"], v["modconv_1x1_weight"], v["modconv_styles"], demodulate=False)
    assert max_err(y, v["modconv_1x1_demod0"]) <= 5e-5
    b = v["bias_act_b"]
    small = ops.bias_act(v["x"], b, act="lrelu", gain=math.sqrt(2), clamp=256)
    assert max_err(small, v["bias_act_lrelu_g2_c256"]) <= 1e-5
    big = ops.bias_act(v["x_big"], b, act="lrelu", gain=math.sqrt(2), clamp=256)
    assert max_err(big, v["bias_act_lrelu_g2_c256_big"]) <= 1e-5
    assert big.abs().max().item() == 256  # the clamp is reached
    assert max_err(ops.bias_act(v["x_big"], b, act="linear", clamp=256), v["bias_act_linear_c256_big"]) <= 1e-5
    assert max_err(ops.normalize_2nd_moment(v["n2m_in"]), v["n2m_out"]) <= 1e-5


# --------------------------------------------------------------------------- ops properties (no data needed)


def test_upsample2d_is_the_closed_form_rule_with_zero_border():
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:  # 0.25/0.75 rule, x[-1] = x[H] = 0
        t = t.movedim(dim, -1)
        pad = torch.nn.functional.pad(t, [1, 1])
        even = 0.25 * pad[..., :-2] + 0.75 * t
        odd = 0.75 * t + 0.25 * pad[..., 2:]
        return torch.stack([even, odd], dim=-1).flatten(-2).movedim(-1, dim)

    expected = along(along(x, 2), 3)
    assert max_err(ops.upsample2d(x, ops.setup_filter()), expected) < 1e-6


def test_conv0_is_not_upsample_then_conv():
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(1, 4, 6, 6, generator=gen), torch.randn(5, 4, 3, 3, generator=gen)
    f = ops.setup_filter()
    fused = ops.conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=False)
    naive = torch.nn.functional.conv2d(ops.upsample2d(x, f), w.flip([2, 3]), padding=1)
    assert max_err(fused[..., 1:-1, 1:-1], naive[..., 1:-1, 1:-1]) < 1e-4  # same interior
    assert max_err(fused, naive) > 1e-2  # different 1-pixel border


def test_demodulation_is_scale_invariant():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 8, 8, generator=gen)
    w, s = torch.randn(5, 4, 3, 3, generator=gen), torch.randn(3, 4, generator=gen)
    base = ops.modulated_conv2d(x, w, s, padding=1)
    scaled = ops.modulated_conv2d(x, w * torch.rand(5, 1, 1, 1, generator=gen) * 10, s * 3.0, padding=1)
    assert max_err(base, scaled) < 1e-4
    assert max_err(base, ops.modulated_conv2d(x, w, s, padding=1, demodulate=False)) > 1e-2


# --------------------------------------------------------------------------- generator vs reference


def test_state_dict_keys_order_and_shapes_match_official(ref):
    sd = ref.G.state_dict()
    assert list(sd) == list(ref.state_dict)
    assert {k: list(t.shape) for k, t in sd.items()} == ref.config["state_dict_shapes"]
    assert ref.G.num_ws == ref.config["num_ws"]
    slices = ref.G.synthesis.block_ws_slices()
    for block in ref.config["blocks"]:
        assert slices[block["res"]] == slice(block["ws_start"], block["ws_start"] + block["ws_count"])
    channels = ref.G.synthesis.channels_per_resolution
    assert {str(r): ch for r, ch in channels.items()} == ref.config["channels_per_resolution"]


@pytest.mark.parametrize("key,psi,cutoff", [
    ("ws_psi1.0", 1.0, None), ("ws_psi0.7", 0.7, None), ("ws_psi0.5_cutoff2", 0.5, 2),
])
def test_mapping_matches_reference(ref, key, psi, cutoff):
    v = ref.vectors
    with torch.no_grad():
        ws = ref.G.mapping(v["z"], v["c"], truncation_psi=psi, truncation_cutoff=cutoff)
    assert max_err(ws, v[key]) <= 2e-5


@pytest.mark.parametrize("key,psi,noise_mode", [
    ("img_psi1.0_const", 1.0, "const"), ("img_psi0.7_const", 0.7, "const"), ("img_psi1.0_none", 1.0, "none"),
])
def test_images_match_reference(ref, key, psi, noise_mode):
    v = ref.vectors
    with torch.no_grad():
        img = ref.G(v["z"], v["c"], truncation_psi=psi, noise_mode=noise_mode)
    assert img.dtype == torch.float32
    assert max_err(img, v[key]) <= 1e-4


def test_nonfused_modconv_matches_reference_and_fused(ref):
    v = ref.vectors
    with torch.no_grad():
        fused = ref.G.synthesis(v["ws_psi1.0"], noise_mode="const", fused_modconv=True)
        nonfused = ref.G.synthesis(v["ws_psi1.0"], noise_mode="const", fused_modconv=False)
    assert max_err(nonfused, fused) <= 1e-4
    assert max_err(nonfused, v["img_psi1.0_const"]) <= 1e-4


def test_clamp_stress_matches_reference(uncond64):
    v = uncond64.vectors
    prefix = "clampstress.override."
    overrides = {k[len(prefix):]: t for k, t in v.items() if k.startswith(prefix)}
    assert overrides  # the reference data carries the bias overrides
    G = Generator(**{k: uncond64.config[k] for k in INIT_KEYS}).eval()
    G.load_state_dict({**uncond64.state_dict, **overrides}, strict=True)
    with torch.no_grad():
        img = G(v["z"][:4], v["c"][:4], truncation_psi=1.0, noise_mode="const")
        assert max_err(img, v["clampstress.img_psi1.0_const"]) <= 2e-3
        # The clamp really is exercised: without it the output moves by a lot.
        for m in G.modules():
            if hasattr(m, "conv_clamp"):
                m.conv_clamp = None
        unclamped = G(v["z"][:4], v["c"][:4], truncation_psi=1.0, noise_mode="const")
    assert max_err(unclamped, v["clampstress.img_psi1.0_const"]) > 1.0


def test_per_block_outputs_match_reference(cond32):
    v, G = cond32.vectors, cond32.G
    seen = {}
    hooks = [
        block.register_forward_hook(lambda mod, args, out, res=block.resolution: seen.__setitem__(res, out))
        for block in G.synthesis.blocks()
    ]
    try:
        with torch.no_grad():
            G.synthesis(v["ws_psi1.0"][:1], noise_mode="const")
    finally:
        for h in hooks:
            h.remove()
    assert sorted(seen) == [4, 8, 16, 32]
    for res, (x, img) in seen.items():
        assert max_err(x, v[f"block_b{res}_x"]) <= 1e-4
        assert max_err(img, v[f"block_b{res}_img"]) <= 1e-4


def test_soft_label_mix_matches_reference(cond32):
    v, G = cond32.vectors, cond32.G
    with torch.no_grad():
        ws_mix = G.mapping(v["z"], v["c_mix"], truncation_psi=1.0)
        img_mix = G.synthesis(v["ws_mix"], noise_mode="const")
    assert max_err(ws_mix, v["ws_mix"]) <= 2e-5
    assert max_err(img_mix, v["img_mix_const"]) <= 1e-4


def test_eval_mode_never_updates_w_avg_but_training_does(cond32):
    G = Generator(**{k: cond32.config[k] for k in INIT_KEYS})
    G.load_state_dict(cond32.state_dict)
    v, before = cond32.vectors, cond32.state_dict["mapping.w_avg"]
    with torch.no_grad():
        G.eval().mapping(v["z"], v["c"])
        assert torch.equal(G.mapping.w_avg, before)
        G.train()
        w = G.mapping(v["z"], v["c"])[:, 0]
    expected = w.mean(0).lerp(before, 0.995)
    assert max_err(G.mapping.w_avg, expected) < 1e-6 and not torch.equal(G.mapping.w_avg, before)


# --------------------------------------------------------------------------- official key lists and sizes


def _key_list(name: str) -> list[tuple[str, list[int]]]:
    lines = _need(DESIGN / name).read_text().splitlines()
    return [(key, json.loads(shape)) for key, shape in (line.split("\t") for line in lines if line.strip())]


@pytest.mark.parametrize("listing,kwargs", [
    ("state_dict_cifar.txt", dict(z_dim=512, c_dim=10, w_dim=512, img_resolution=32, img_channels=3,
                                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 32768})),
    ("state_dict_ffhq1024.txt", dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3)),
], ids=["cifar", "ffhq1024"])
def test_official_configs_have_the_official_state_dict(listing, kwargs):
    expected = _key_list(listing)
    G = Generator(**kwargs)
    assert [(k, list(t.shape)) for k, t in G.state_dict().items()] == expected


@pytest.mark.parametrize("kwargs,n_params", [
    (dict(c_dim=10, img_resolution=32, mapping_kwargs={"num_layers": 2}), 20_215_315),
    (dict(c_dim=0, img_resolution=256, synthesis_kwargs={"channel_base": 16384}), 24_767_458),
    (dict(c_dim=0, img_resolution=1024), 30_370_060),
])
def test_parameter_counts_match_the_spec(kwargs, n_params):
    G = Generator(z_dim=512, w_dim=512, img_channels=3, **kwargs)
    assert sum(p.numel() for p in G.parameters()) == n_params
    assert G.num_ws == 2 * int(math.log2(kwargs["img_resolution"])) - 2


# --------------------------------------------------------------------------- tiny twin and API contracts


@pytest.fixture(scope="module")
def tiny():
    return tiny_generator(c_dim=0, resolution=32, seed=0)


def test_tiny_twin_is_labelled_random_and_deterministic(tiny):
    assert tiny.label == "StyleGAN2-ADA · random init (seed 0)"
    assert tiny.pretrained is False
    assert not tiny.training
    z = z_from_seeds([0, 1], tiny.z_dim)
    img = tiny(z)
    assert img.shape == (2, 3, 32, 32) and img.dtype == torch.float32 and torch.isfinite(img).all()
    assert torch.equal(img, tiny_generator(seed=0)(z))
    other = tiny_generator(seed=1)
    assert other.label.endswith("(seed 1)")
    assert max_err(other(z), img) > 1e-3


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_architectures_layout_and_fused_equals_nonfused(architecture):
    G = tiny_generator(c_dim=3, resolution=16, architecture=architecture)
    keys = list(G.state_dict())
    torgbs = sorted(k.split(".")[1] for k in keys if k.endswith("torgb.weight"))
    assert torgbs == (["b16", "b4", "b8"] if architecture == "skip" else ["b16"])
    assert any(k.endswith("skip.weight") for k in keys) == (architecture == "resnet")
    assert "synthesis.b4.skip.weight" not in keys
    assert G.num_ws == 6
    z, c = z_from_seeds([3, 4, 5], G.z_dim), torch.eye(3)
    ws = G.mapping(z, c)
    fused = G.synthesis(ws, fused_modconv=True)
    nonfused = G.synthesis(ws, fused_modconv=False)
    assert max_err(fused, nonfused) < 1e-4
    G.train()  # training mode selects the non-fused path by default
    try:
        assert max_err(G.synthesis(ws), nonfused) < 1e-5
    finally:
        G.eval()


def test_noise_modes(tiny):
    z = z_from_seeds([7], tiny.z_dim).repeat(2, 1)
    const = tiny(z, noise_mode="const")
    assert torch.equal(const[0], const[1])
    assert max_err(tiny(z, noise_mode="none"), const) > 1e-4
    r1 = tiny(z, noise_mode="random", generator=torch.Generator().manual_seed(5))
    r2 = tiny(z, noise_mode="random", generator=torch.Generator().manual_seed(5))
    assert torch.equal(r1, r2)
    assert max_err(r1[0], r1[1]) > 1e-4  # fresh noise per sample
    with pytest.raises(ValueError, match="torch.Generator"):
        tiny(z, noise_mode="random")
    with pytest.raises(ValueError, match="noise_mode"):
        tiny(z, noise_mode="fixed")


def test_random_noise_never_touches_global_rngs(tiny):
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    tiny(z_from_seeds([1, 2], tiny.z_dim), noise_mode="random", generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])


def test_truncation_psi_and_cutoff(tiny):
    z = z_from_seeds([0, 1, 2], tiny.z_dim)
    ws = tiny.mapping(z)
    assert torch.equal(tiny.mapping(z, truncation_psi=1.0), ws)
    w_avg = tiny.mapping.w_avg
    assert w_avg.abs().max() > 0  # the twin has a real w_avg
    cut = tiny.mapping(z, truncation_psi=0.0, truncation_cutoff=3)
    assert max_err(cut[:, :3], w_avg.expand(3, 3, -1)) < 1e-6
    assert torch.equal(cut[:, 3:], ws[:, 3:])
    half = tiny.mapping(z, truncation_psi=0.5)
    assert max_err(half, w_avg + 0.5 * (ws - w_avg)) < 1e-6


def test_class_embedding_is_affine_in_c():
    G = tiny_generator(c_dim=4)
    a, b = torch.eye(4)[:1], torch.eye(4)[2:3]
    mixed = G.mapping.embed(0.7 * a + 0.3 * b)
    assert max_err(mixed, 0.7 * G.mapping.embed(a) + 0.3 * G.mapping.embed(b)) < 1e-5


def test_z_from_seeds_follows_numpy_randomstate():
    z = z_from_seeds([0, 42, 2**32 - 1], 16)
    assert z.shape == (3, 16) and z.dtype == torch.float32
    for row, seed in zip(z, [0, 42, 2**32 - 1]):
        assert torch.equal(row, torch.from_numpy(np.random.RandomState(seed).randn(1, 16)[0]).float())
    assert z_from_seeds(5, 4).shape == (1, 4)
    with pytest.raises(ValueError, match="seeds"):
        z_from_seeds([-1], 4)


def test_state_dict_round_trip_and_init_kwargs(tiny):
    G2 = Generator(**tiny.init_kwargs, seed=123).eval()
    assert G2.label.endswith("(seed 123)") and G2.pretrained is False
    G2.load_state_dict(tiny.state_dict(), strict=True)
    z = z_from_seeds([9], tiny.z_dim)
    assert torch.equal(G2(z), tiny(z))
    # StyleGAN3-repository layout: synthesis kwargs flattened at the top level.
    flat = dict(tiny.init_kwargs)
    flat.update(flat.pop("synthesis_kwargs"))
    assert Generator(**flat).init_kwargs == tiny.init_kwargs


def test_loaded_weights_carry_their_provenance(tiny):
    G = Generator(**tiny.init_kwargs)
    assert G.label.startswith("StyleGAN2-ADA · random init") and G.pretrained is False
    G.set_provenance("afhqcat.pkl", pretrained=True)
    assert (G.label, G.pretrained) == ("StyleGAN2-ADA · afhqcat.pkl", True)
    with pytest.raises(ValueError, match="source"):
        G.set_provenance("", pretrained=True)


def test_bad_inputs_give_clear_errors(tiny):
    with pytest.raises(ValueError, match=r"z must have shape \[N, 32\]"):
        tiny(torch.zeros(2, 31))
    with pytest.raises(ValueError, match="ws must have shape"):
        tiny.synthesis(torch.zeros(2, 32))
    cond = tiny_generator(c_dim=2)
    with pytest.raises(ValueError, match="class-conditional"):
        cond(z_from_seeds([0], 32))
    with pytest.raises(ValueError, match="one label row per latent"):
        cond(z_from_seeds([0, 1], 32), torch.eye(2)[:1])
    with pytest.raises(TypeError, match="unknown synthesis argument"):
        Generator(32, 0, 32, 16, 3, synthesis_kwargs={"chanel_base": 256})
    with pytest.raises(ValueError, match="power of two"):
        Generator(32, 0, 32, 24, 3)


def test_fp16_blocks_are_recorded_but_cpu_runs_float32():
    G = Generator(32, 0, 32, 32, 3, synthesis_kwargs={"channel_base": 256, "channel_max": 32, "num_fp16_res": 4}).eval()
    # spec 4.12: R=32, num_fp16_res=4 -> fp16 for 8..32, never b4.
    assert [b.use_fp16 for b in G.synthesis.blocks()] == [False, True, True, True]
    z = z_from_seeds([0], 32)
    out = G(z, force_fp32=False)
    assert out.dtype == torch.float32 and torch.equal(out, G(z))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_gpu_is_close_to_float32():
    G = Generator(32, 0, 32, 32, 3, synthesis_kwargs={"channel_base": 256, "channel_max": 32, "num_fp16_res": 4,
                                                      "conv_clamp": 256}).eval().cuda()
    z = z_from_seeds(list(range(4)), 32, device="cuda")
    with torch.no_grad():
        ref, half = G(z), G(z, force_fp32=False)
    assert half.dtype == torch.float32 and max_err(half, ref) < 2e-2


def test_upsampling_conv_equals_the_reference_form():
    # Spec 4.8: conv0 = upfirdn2d(X, f, up=2, pad=(3,2,3,2), gain=4), then a valid *true*
    # convolution with W (cross-correlation with the flipped W). Asymmetric W shows the flip.
    gen = torch.Generator().manual_seed(3)
    x, w = torch.randn(2, 3, 5, 6, generator=gen), torch.randn(4, 3, 3, 3, generator=gen)
    f = ops.setup_filter()
    u = ops.upfirdn2d(x, f, up=2, padding=(3, 2, 3, 2), gain=4)
    expected = torch.nn.functional.conv2d(u, w.flip([2, 3]))
    got = ops.conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=False)
    assert got.shape == (2, 4, 10, 12)
    assert max_err(got, expected) < 1e-5
    assert max_err(ops.conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=True), expected) > 1e-2

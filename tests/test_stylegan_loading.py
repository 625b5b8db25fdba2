"""Safe loading of StyleGAN2-ADA network pickles, artlab's own generator files, and folders.

Every hostile file is aimed at a sentinel file; each test asserts the refusal *and* that the
sentinel never appeared. Control tests show the gadgets are live (a plain unpickler runs them).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import pickle
import pickletools
import re
import shutil
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import hostile_files as hf
import stylegan_pickles as sp
from artlab import catalogue, weights
from artlab.cli import main
from artlab.stylegan import pickle_io as pio
from artlab.stylegan import pretrained, tiny_generator

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
STYLEGAN_DATA = SHARED / "testdata" / "stylegan2"
MIMICS = [STYLEGAN_DATA / "mimic" / f"mimic_network_p{p}.pkl" for p in (3, 4)]
OFFICIAL_OUTER = {  # spec 1.5, what a network pickle written by torch + numpy >= 2 names
    "torch_utils.persistence._reconstruct_persistent_obj", "collections.OrderedDict",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_tensor_v2", "torch.storage._load_from_bytes",
    "numpy._core.multiarray.scalar", "numpy.dtype", "dnnlib.util.EasyDict",
}
CORPUS_NAMES = list(sp.malicious_corpus(Path("/nonexistent/sentinel")))


def _shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present (only developers' machines and CI have ../shared)")
    return path


def _blob_storages(data: bytes) -> set[str]:
    """sha256 of every storage in the file, decoded independently by torch.load(weights_only=True)."""
    digests = set()
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("BINBYTES", "BINBYTES8", "SHORT_BINBYTES") and arg.startswith(b"\x80\x02\x8a\x0a"):
            with warnings.catch_warnings():  # a legacy blob loads as a (deprecated) TypedStorage
                warnings.simplefilter("ignore", UserWarning)
                storage = torch.load(io.BytesIO(arg), weights_only=True)
                digests.add(hashlib.sha256(bytes(storage.untyped())).hexdigest())
    return digests


def _tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _module_src_texts(data: bytes) -> set[str]:
    """The strings stored right after a 'module_src' key (read with pickletools, nothing built)."""
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    return {ops[i + 2][1] if ops[i + 1][0] in ("MEMOIZE", "BINPUT") else ops[i + 1][1]
            for i, (name, arg) in enumerate(ops) if name.endswith("UNICODE") and arg == "module_src"}


RESAMPLE_FILTER = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64


# ------------------------------------------------------------------------------------ shared mimic pickles


@pytest.mark.parametrize("path", MIMICS, ids=["p3", "p4"])
def test_shared_mimic_pickle_loads_without_running_anything(path):
    data = _shared(path).read_bytes()
    globals_ = {g.dotted for g in pio.list_globals(path)}
    assert globals_ <= {f"{m}.{n}" for m, n in pio.ALLOWED_GLOBALS}
    assert ("builtins.set" in globals_) == path.name.endswith("p3.pkl")  # protocol 4 has set opcodes

    records = pio.load_network_pickle(path)
    assert set(records) == {"G", "D", "G_ema"}  # augment_pipe is None in the mimic
    G_ema = records["G_ema"]
    assert G_ema.class_name == "Generator" and G_ema.init_args == ()
    kwargs = G_ema.generator_kwargs()
    assert (kwargs["z_dim"], kwargs["c_dim"], kwargs["img_resolution"]) == (16, 4, 16)
    assert isinstance(G_ema.init_kwargs["synthesis_kwargs"], dict)  # EasyDict became a plain dict
    # keys, order and shapes follow spec section 3 for the stored configuration
    expected = sp.expected_generator_shapes(kwargs)
    assert list(G_ema.state_dict) == list(expected)
    assert {k: list(v.shape) for k, v in G_ema.state_dict.items()} == expected
    assert all(v.dtype == torch.float32 for v in G_ema.state_dict.values())
    for key, value in G_ema.state_dict.items():
        if key.endswith("resample_filter"):
            assert torch.equal(value, RESAMPLE_FILTER), key
    # per-module classes and attributes (spec 1.3); numpy.float64 gains came back as floats
    assert G_ema.module_classes["synthesis.b4.conv1"] == "SynthesisLayer"
    assert G_ema.attributes["synthesis.b4.conv1"]["act_gain"] == pytest.approx(2 ** 0.5)
    assert G_ema.attributes[""]["num_ws"] == 2 * 4 - 2
    (src,) = _module_src_texts(data)
    assert G_ema.module_src_sha256 == hashlib.sha256(src.encode()).hexdigest()


def test_shared_mimic_tensors_match_an_independent_decoding():
    """Every tensor equals a storage decoded by torch itself; protocols 3 and 4 hold the same networks."""
    p3, p4 = (pio.load_network_pickle(_shared(path)) for path in MIMICS)
    storages = _blob_storages(MIMICS[1].read_bytes())
    for name, record in p4.items():
        assert {_tensor_digest(t) for t in record.state_dict.values()} <= storages
        assert list(p3[name].state_dict) == list(record.state_dict)
        for key, value in record.state_dict.items():
            assert torch.equal(p3[name].state_dict[key], value), (name, key)


def test_shared_mimic_pickle_builds_a_generator():
    path = _shared(MIMICS[1])
    G = pio.load(path)
    record = pio.load_network_pickle(path)["G_ema"]
    assert list(G.state_dict()) == list(record.state_dict)
    for k, v in G.state_dict().items():
        assert torch.equal(v, record.state_dict[k]), k
    assert G.pretrained and G.weights_origin == "trained" and path.name in G.label
    assert not G.training and not any(p.requires_grad for p in G.parameters())


def test_expected_shapes_helper_matches_the_design_files():
    design = _shared(SHARED / "design")
    cifar = {"z_dim": 512, "c_dim": 10, "w_dim": 512, "img_resolution": 32, "img_channels": 3,
             "mapping_kwargs": {"num_layers": 2}, "synthesis_kwargs": {"channel_base": 32768}}
    ffhq = {"z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 1024, "img_channels": 3,
            "mapping_kwargs": {"num_layers": 8}, "synthesis_kwargs": {"channel_base": 32768}}
    for cfg, name in ((cifar, "state_dict_cifar.txt"), (ffhq, "state_dict_ffhq1024.txt")):
        listed = [line.split("\t") for line in (design / name).read_text().splitlines() if line.strip()]
        assert list(sp.expected_generator_shapes(cfg).items()) == [(k, json.loads(s)) for k, s in listed]
    for folder in ("cond32", "uncond64_skip"):
        config = json.loads((_shared(STYLEGAN_DATA / folder) / "config.json").read_text())
        assert sp.expected_generator_shapes(config) == config["state_dict_shapes"]


# ------------------------------------------------------------------------------------ our own writer


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("legacy", [False, True], ids=["torch2-py311", "torch1.7-py37"])
def test_writer_round_trip(tmp_path, protocol, legacy):
    G = sp.valid_generator_tree(seed=protocol, legacy_containers=legacy, py37_easydict=legacy, channels_last=True)
    # a buffer that is a view into a larger storage (non-zero offset) and a scalar parameter
    G.modules["mapping"].buffers["w_avg"] = torch.arange(20.0)[5:13]
    assert G.modules["synthesis"].modules["b4"].modules["conv1"].params["weight"].stride()[1] == 1  # channels-last
    D = sp.tiny_discriminator()
    path = sp.write_network_pickle(tmp_path / "net.pkl", {"G": G, "D": D, "G_ema": G, "augment_pipe": None},
                                   protocol=protocol, training_set_kwargs={"path": "x.zip", "xflip": False})
    globals_ = {g.dotted for g in pio.list_globals(path)}
    expected = set(OFFICIAL_OUTER)  # D's weight_gain is a numpy.float64
    if protocol <= 3:
        expected |= {"__builtin__.set" if protocol == 2 else "builtins.set"}
    if protocol == 2:
        expected |= {"_codecs.encode"}
    assert globals_ == expected
    builds = sum(op.name == "BUILD" for op, _, _ in pickletools.genops(path.read_bytes()))
    assert builds == (2 if legacy else 0) + 1  # mapping/synthesis_kwargs (G is G_ema: memoized) + D's numpy dtype

    records = pio.load_network_pickle(path)
    assert set(records) == {"G", "D", "G_ema"}
    want = OrderedDict()
    stack = [("", G)]
    while stack:  # what nn.Module.state_dict would list: params, buffers, then children
        prefix, node = stack.pop(0)
        want.update((prefix + k, v) for k, v in node.params.items())
        want.update((prefix + k, v) for k, v in node.buffers.items())
        stack[:0] = [(f"{prefix}{k}.", m) for k, m in node.modules.items()]
    got = records["G_ema"].state_dict
    assert list(got) == list(want)
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor) and got[key].shape == tensor.shape, key
    assert got["mapping.w_avg"].tolist() == list(range(5, 13))
    assert got["synthesis.b4.conv1.noise_strength"].dim() == 0
    assert records["G_ema"].init_kwargs == json.loads(json.dumps(G.init_kwargs))
    assert records["D"].class_name == "Discriminator" and list(records["D"].state_dict) == ["out.weight", "out.bias"]
    assert records["D"].attributes["out"]["weight_gain"] == pytest.approx(8 ** -0.5)


@pytest.mark.parametrize("protocol", [3, 4])
def test_writer_matches_the_shared_mimic_globals(tmp_path, protocol):
    shared = {g.dotted for g in pio.list_globals(_shared(MIMICS[0 if protocol == 3 else 1]))}
    G = tiny_generator(c_dim=2, resolution=16)
    tree = sp.generator_tree(G.state_dict(), G.init_kwargs, G=G)
    ours = sp.network_pickle_bytes({"G": tree, "D": sp.tiny_discriminator(), "G_ema": tree}, protocol=protocol)
    assert {g.dotted for g in pio.list_globals(ours)} == shared


@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_generator_round_trip_through_the_official_layout(tmp_path, architecture):
    """Spec 8.1: export our generator in the official layout, load it back, same images bit for bit."""
    G = tiny_generator(c_dim=3, resolution=16, architecture=architecture)
    tree = sp.generator_tree(G.state_dict(), G.init_kwargs, G=G)
    path = sp.write_network_pickle(tmp_path / "snapshot.pkl", {"G": tree, "D": sp.tiny_discriminator(),
                                                               "G_ema": tree, "augment_pipe": None})
    G2 = pio.load(path)
    expected = copy.deepcopy(G.init_kwargs)
    expected["mapping_kwargs"]["w_avg_beta"] = 0.995  # filled in from the stored runtime attributes
    assert type(G2) is type(G) and G2.init_kwargs == expected
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))
    c = torch.nn.functional.one_hot(torch.arange(4) % 3, 3).float()
    assert torch.equal(G2(z, c, truncation_psi=0.7), G(z, c, truncation_psi=0.7))
    assert G2.label == "StyleGAN2-ADA · trained weights (snapshot.pkl, G_ema)"
    assert G2.pretrained and G2.network == "G_ema" and G2.source == str(path)
    assert pio.load(path, which="G").network == "G"
    with pytest.raises(ValueError, match="only the generators"):
        pio.load(path, which="D")


def test_an_official_file_name_alone_is_not_labelled_official(tmp_path):
    """Any file can be called metfaces.pkl: the name is no evidence of NVIDIA's weights."""
    G = tiny_generator()
    tree = sp.generator_tree(G.state_dict(), G.init_kwargs, G=G)
    path = sp.write_network_pickle(tmp_path / "metfaces.pkl", {"G_ema": tree})
    G2 = pio.load(path)
    assert G2.weights_origin == "trained" and G2.pretrained and G2.provenance is None
    assert G2.label == "StyleGAN2-ADA · trained weights (metfaces.pkl, not verified, G_ema)"
    with pytest.raises(pio.PickleFormatError, match="holds no G "):
        pio.load(path, which="G")


def _tiny_pickle(path: Path) -> Path:
    G = tiny_generator(resolution=8)
    return sp.write_network_pickle(path, {"G_ema": sp.generator_tree(G.state_dict(), G.init_kwargs, G=G)})


def test_an_imported_official_name_is_labelled_by_content_not_verified(tmp_path, hub_cache, capsys):
    src = _tiny_pickle(tmp_path / "ffhq.pkl")  # anything at all, named like the official pickle
    digest = weights.sha256_of(src)
    assert main(["weights", "import", str(src)]) == 0
    capsys.readouterr()
    record = json.loads((hub_cache / "ffhq.pkl.provenance.json").read_text())
    assert record["how"] == "imported" and record["sha256"] == digest and record["source"] == str(src)
    assert record["verified"] is False and record["check"] == "none published" and record["date"][:2] == "20"
    G = pio.load("ffhq")
    assert G.weights_origin == "trained" and "official" not in G.label and G.provenance.sha256 == digest
    assert G.label == f"StyleGAN2-ADA · trained weights (imported as ffhq.pkl, not verified, sha256 {digest[:8]}…, G_ema)"
    # saving the record as an artlab file does not turn it official either
    saved = pio.save_generator(pio.load_network_pickle(hub_cache / "ffhq.pkl")["G_ema"], tmp_path / "ffhq.pt")
    assert pio.load(saved).weights_origin == "trained"


def test_only_a_download_from_the_official_url_is_labelled_official(tmp_path, hub_cache, monkeypatch):
    payload = _tiny_pickle(tmp_path / "served.pkl").read_bytes()
    urls = []

    def fetch_url(url, dest, **kwargs):  # stands in for the network: NVIDIA's CDN serves the payload
        urls.append(url)
        dest.write_bytes(payload)
        return dest

    monkeypatch.delenv("ARTLAB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "fetch_url", fetch_url)
    G = pio.load("metfaces")  # fetched the standard way, recorded with its URL and sha256
    assert urls == [pretrained.BASE_URL + "metfaces.pkl"]
    assert G.weights_origin == "official" and G.provenance.how == "downloaded"
    assert G.label == "StyleGAN2-ADA metfaces · official NVIDIA weights (metfaces.pkl, G_ema)"
    # replaced afterwards (same name, other contents): the record no longer vouches for it
    cached = hub_cache / "metfaces.pkl"
    cached.write_bytes(_tiny_pickle(tmp_path / "other.pkl").read_bytes())
    assert pio.load(cached).weights_origin == "trained" and "official" not in pio.load(cached).label


# ------------------------------------------------------------------------------------ hostile files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    sentinel = folder / "sentinel"
    return sentinel, sp.malicious_corpus(sentinel)


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_hostile_pickle_is_refused(name, corpus, tmp_path):
    sentinel, files = corpus
    data, reason = files[name]
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(data)
    with pytest.raises(pio.PickleFormatError, match=reason) as info:
        pio.load_network_pickle(path)
    assert str(path) in str(info.value)  # the message names the file
    with pytest.raises(pio.PickleFormatError):
        pio.load(path)
    assert not sentinel.exists()


def test_code_execution_refusals_say_where(corpus, tmp_path):
    sentinel, files = corpus
    path = tmp_path / "nested.pkl"
    path.write_bytes(files["nested_synthesis_kwargs"][0])
    with pytest.raises(pio.UnsafePickleError) as info:
        pio.load_network_pickle(path)
    message = str(info.value)
    position = int(re.search(r"\(byte (\d+)\)", message).group(1))
    op = next(op for op, _, pos in pickletools.genops(files["nested_synthesis_kwargs"][0]) if pos == position)
    assert op.name == "STACK_GLOBAL" and "'posix.system'" in message and "Nothing" in message
    assert not sentinel.exists()


@pytest.mark.skipif(shutil.which("touch") is None, reason="needs the touch command")
def test_the_gadgets_are_live_under_a_plain_unpickler(tmp_path):
    """Control: without the safe loader these payloads do run (so the refusals above mean something)."""
    for name in sp.gadgets(tmp_path / "unused"):
        sentinel = tmp_path / f"{name}.flag"
        payload = pickle.dumps(sp.gadgets(sentinel)[name], protocol=4)
        pickle.loads(payload)  # noqa: S301 - deliberate, in a temporary folder
        assert sentinel.exists(), name
    for builder in (sp.getattr_chain, sp.memo_hidden_global):
        sentinel = tmp_path / f"{builder.__name__}.flag"
        pickle.loads(builder(sentinel))  # noqa: S301
        assert sentinel.exists(), builder.__name__


def test_module_src_is_never_executed(tmp_path):
    sentinel = tmp_path / "sentinel"
    src = sp.module_src_payload(sentinel)
    G = tiny_generator()
    tree = sp.generator_tree(G.state_dict(), G.init_kwargs, G=G, module_src=src)
    path = sp.write_network_pickle(tmp_path / "net.pkl", {"G": tree, "D": sp.tiny_discriminator(), "G_ema": tree})
    records = pio.load_network_pickle(path)
    assert records["G_ema"].module_src_sha256 == hashlib.sha256(src.encode()).hexdigest()
    G2 = pio.load(path)
    assert torch.equal(G2.synthesis.b4.const, G.synthesis.b4.const)
    assert not sentinel.exists()
    control = tmp_path / "control"
    exec(compile(sp.module_src_payload(control), "payload", "exec"), {})  # noqa: S102 - the payload is live
    assert control.exists()


def test_hostile_artlab_file_is_refused_by_weights_only(tmp_path):
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "generator.pt"
    torch.save({"format": pio.FORMAT_NAME, "version": 1, "config": "{}",
                "state_dict": sp.gadgets(sentinel)["eval"]}, path)
    with pytest.raises(pio.UnsafePickleError, match="weights_only") as info:
        pio.load(path)
    assert not sentinel.exists()
    assert "not an allowed global" in str(info.value) or "is blocked" in str(info.value)  # the reason stays
    assert not re.search(r"weights_only`?\s*(set to|=)\s*`?False|safe_globals", str(info.value))  # the advice goes


# ------------------------------------------------------------------------------------ damaged files


@pytest.fixture(scope="module")
def good_pickle() -> bytes:
    G = tiny_generator(resolution=8)
    tree = sp.generator_tree(G.state_dict(), G.init_kwargs, G=G)
    return sp.network_pickle_bytes({"G": tree, "D": sp.tiny_discriminator(), "G_ema": tree}, protocol=4)


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.01, 0.2, 0.5, 0.9, 0.999, 1.0])
def test_truncated_file_gives_a_clear_error(good_pickle, tmp_path, fraction):
    cut = min(max(int(len(good_pickle) * fraction), 1), len(good_pickle) - 1)
    path = tmp_path / "cut.pkl"
    path.write_bytes(good_pickle[:cut])
    with pytest.raises(pio.PickleFormatError, match="truncated") as info:
        pio.load_network_pickle(path)
    assert str(path) in str(info.value)


def test_corrupted_storage_count_is_caught(good_pickle, tmp_path):
    data = bytearray(good_pickle)
    blob, pos = next((arg, pos) for op, arg, pos in pickletools.genops(good_pickle)
                     if op.name.endswith("BYTES") and arg.startswith(b"\x80\x02\x8a\x0a"))
    start = good_pickle.index(blob, pos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        storage = torch.load(io.BytesIO(blob), weights_only=True)  # independent reading of the blob
        count_at = start + len(blob) - storage.untyped().nbytes() - 8  # int64 count, then the data (spec 1.4)
    assert int.from_bytes(data[count_at:count_at + 8], "little") == storage.size()
    data[count_at] ^= 0x01
    path = tmp_path / "corrupt.pkl"
    path.write_bytes(bytes(data))
    with pytest.raises(pio.PickleFormatError, match="does not match its header"):
        pio.load_network_pickle(path)


# ------------------------------------------------------------------------------------ bounded memory


def test_a_zero_stride_view_is_refused_by_the_files_size_before_allocating(tmp_path):
    """A ~1 KB pickle declaring a 1 GiB view of one float (stride 0) used to be decoded (1 GiB, seconds) first."""
    path = hf.zero_stride_pickle(tmp_path / "bomb.pkl", elements=2**28)
    assert path.stat().st_size < 2000
    start = time.perf_counter()
    with hf.address_space_limit(256 << 20), pytest.raises(pio.PickleFormatError, match="repeats its data") as info:
        pio.load_network_pickle(path)
    assert time.perf_counter() - start < 5 and "Nothing was allocated" in str(info.value)
    assert str(path) in str(info.value)
    # a small repeated view inside a file's own size is still read (torch.save keeps expanded tensors so)
    ok = tmp_path / "expanded.pkl"
    ok.write_bytes(sp.with_buffer(sp.RawTensor(sp.RawStorage(sp.storage_blob()), size=(3, 4), stride=(0, 1))))
    w_avg = pio.load_network_pickle(ok)["G_ema"].state_dict["w_avg"]
    assert torch.equal(w_avg, torch.arange(4.0).expand(3, 4))


@pytest.mark.skipif(not hf.CAN_MKFIFO, reason="FIFOs are POSIX")
def test_a_fifo_named_pkl_is_refused_at_once(tmp_path):
    pipe = hf.fifo(tmp_path / "ffhq.pkl")
    for call in (lambda: pio.load(pipe), lambda: pio.load_network_pickle(pipe), lambda: pio.list_globals(pipe)):
        outcome = hf.without_blocking(call, fifo=pipe, timeout=10)
        assert isinstance(outcome, pio.PickleFormatError) and "FIFO" in str(outcome), outcome


def test_a_huge_file_is_streamed_and_refused_by_its_size_not_read_whole(tmp_path):
    """A 10 GB .pkl (sparse here) used to be read into memory whole before any check."""
    path = hf.sparse_pickle(tmp_path / "huge.pkl", size=10 * 2**30)
    with hf.address_space_limit(512 << 20):
        with pytest.raises(pio.PickleFormatError, match=r"10,737,418,240 bytes, more than the .* \(max_bytes\)"):
            pio.load(path)
        # given a cap above its size, it is streamed: the scan stops at the pickle's end, nothing more is read
        with pytest.raises(pio.PickleFormatError, match="unexpected bytes after the end"):
            pio.load_network_pickle(path, max_bytes=2**40)
        assert {g.dotted for g in pio.list_globals(path)} >= {"torch._utils._rebuild_tensor_v2"}


def test_a_zip_archive_as_a_storage_blob_says_what_it_is(tmp_path):
    """It used to fail with "'ascii' codec can't decode byte ..." from the scan of the blob."""
    path = hf.zip_blob_pickle(tmp_path / "zipblob.pkl")
    with pytest.raises(pio.PickleFormatError, match=r"(?s)zip archive.*legacy torch.save streams") as info:
        pio.load_network_pickle(path)
    assert "codec" not in str(info.value) and str(path) in str(info.value)


def test_a_configuration_larger_than_its_weights_is_refused_before_building(tmp_path):
    """Declared 16384-channel layers (~10 GB) used to be allocated and initialised before the weights were compared."""
    path = hf.oversized_config_pickle(tmp_path / "wide.pkl")
    with hf.address_space_limit(768 << 20):
        with pytest.raises(pio.PickleFormatError, match=r"do not fit.*configuration says \[16384, 4, 4\]"):
            pio.load(path)
    G = tiny_generator(resolution=8)
    kwargs = {**G.init_kwargs, "img_resolution": 2**40}
    many = sp.write_network_pickle(tmp_path / "deep.pkl", {"G_ema": sp.generator_tree(G.state_dict(), kwargs, G=G)})
    with pytest.raises(pio.PickleFormatError, match="more layers"):
        pio.load(many)


def test_empty_random_and_foreign_files(tmp_path):
    cases = {
        "empty.pkl": (b"", "is empty"),
        "random.pkl": (b"\x00" + np.random.default_rng(0).bytes(4095), "not a network pickle"),
        "random80.pkl": (b"\x80\x04" + np.random.default_rng(1).bytes(4094), "truncated or corrupt|memo|opcode"),
        "image.png": (b"\x89PNG\r\n\x1a\n" + bytes(64), "not a network pickle"),
        "text.pkl": (b"hello world\n", "not a network pickle"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(pio.PickleFormatError, match=reason):
            pio.load_network_pickle(path)
        with pytest.raises(pio.PickleFormatError):
            pio.load(path)
    zipped = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, zipped)
    with pytest.raises(pio.PickleFormatError, match="zip archive"):
        pio.load_network_pickle(zipped)
    with pytest.raises(pio.PickleFormatError, match="not an artlab generator file"):
        pio.load(zipped)
    with pytest.raises(pio.PickleFormatError, match="is a folder"):
        pio.load_network_pickle(tmp_path)
    with pytest.raises(pio.PickleFormatError, match="without state_dict.pt and config.json"):
        pio.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        pio.load(tmp_path / "missing.pkl")


def test_a_pickle_without_networks_is_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"training_set_kwargs": {"path": "x"}, "G_ema": None}, protocol=4))
    with pytest.raises(pio.PickleFormatError, match="no network"):
        pio.load_network_pickle(path)
    path.write_bytes(pickle.dumps(["not", "a", "dict"], protocol=4))
    with pytest.raises(pio.PickleFormatError, match="expected a dict"):
        pio.load_network_pickle(path)


# ------------------------------------------------------------------------------------ artlab format, folders


def test_save_generator_round_trip(tmp_path):
    G = tiny_generator(c_dim=2, seed=3)
    path = pio.save_generator(G, tmp_path / "tiny.pt")
    raw = torch.load(path, weights_only=True)  # the plain, safe torch reader suffices
    assert raw["format"] == pio.FORMAT_NAME and list(raw["state_dict"]) == list(G.state_dict())
    config = json.loads(raw["config"])
    assert config["init_kwargs"] == G.init_kwargs and config["weights"] == "random"
    G2 = pio.load(path)
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(1))
    c = torch.eye(2)[[0, 1, 0]]
    assert torch.equal(G2(z, c), G(z, c))
    assert not G2.pretrained and G2.label == "StyleGAN2-ADA · random init (tiny.pt, G_ema)"
    with pytest.raises(ValueError, match="holds G_ema, not G"):
        pio.load(path, which="G")
    with pytest.raises(ValueError, match="weights='bogus'"):
        pio.save_generator(G, tmp_path / "x.pt", weights="bogus")


def test_save_a_pickle_record_as_an_artlab_file(tmp_path):
    G = tiny_generator(resolution=8)
    tree = sp.generator_tree(G.state_dict(), G.init_kwargs, G=G)
    pkl = sp.write_network_pickle(tmp_path / "afhqcat.pkl", {"G_ema": tree})
    record = pio.load_network_pickle(pkl)["G_ema"]
    out = pio.save_generator(record, tmp_path / "afhqcat.pt")
    G2 = pio.load(out)
    assert G2.weights_origin == "trained" and "official" not in G2.label  # named afhqcat.pkl, nothing more
    for k, v in G.state_dict().items():
        assert torch.equal(G2.state_dict()[k], v), k


def test_artlab_file_of_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": pio.FORMAT_NAME, "version": 99, "config": "{}", "state_dict": {}}, path)
    with pytest.raises(pio.PickleFormatError, match="version 99"):
        pio.load(path)


@pytest.mark.parametrize("folder", ["cond32", "uncond64_skip"])
def test_shared_reference_folder_loads(folder):
    path = _shared(STYLEGAN_DATA / folder)
    G = pio.load(path)
    expected = torch.load(path / "state_dict.pt", weights_only=True)
    assert list(G.state_dict()) == list(expected)
    for key, value in expected.items():
        assert torch.equal(G.state_dict()[key], value), key
    config = json.loads((path / "config.json").read_text())
    assert G.num_ws == config["num_ws"] and G.c_dim == config["c_dim"]
    assert G.weights_origin == "random" and not G.pretrained  # built from a seed, not trained
    assert G.label == f"StyleGAN2-ADA · random init ({folder}/, G_ema)"


def test_folder_with_mismatched_weights_says_so(tmp_path):
    G = tiny_generator()
    sd = G.state_dict()
    sd.pop("mapping.w_avg")
    torch.save(sd, tmp_path / "state_dict.pt")
    (tmp_path / "config.json").write_text(json.dumps(G.init_kwargs))
    with pytest.raises(pio.PickleFormatError, match="(?s)do not fit.*mapping.w_avg"):
        pio.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"z_dim": 1}))
    with pytest.raises(pio.PickleFormatError, match="lacks"):
        pio.load(tmp_path)


# ------------------------------------------------------------------------------------ registry


def test_official_pickles_are_registered(hub_cache, capsys):
    files = {f.key: f for f in catalogue.known_files()}
    for name in ("ffhq", "metfaces", "afhqcat", "afhqdog", "afhqwild", "brecahad", "cifar10"):
        known = files[f"stylegan2-ada/{name}"]
        assert known.url == f"https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/{name}.pkl"
        assert known.filename == f"{name}.pkl" and known.sha256_prefix is None
    assert main(["weights", "list"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stylegan2-ada/")]
    assert len(listed) == 7 and all("missing" in line for line in listed)


def test_official_name_offline_explains_how_to_get_it(hub_cache, monkeypatch):
    monkeypatch.setenv("ARTLAB_OFFLINE", "1")
    with pytest.raises(weights.WeightsNotFoundError, match="artlab weights import /path/to/ffhq.pkl"):
        pio.load("ffhq")
    assert pretrained.find_official("stylegan2-ada/cifar10").c_dim == 10


def test_official_name_loads_from_the_cache(hub_cache):
    G = tiny_generator(resolution=8)
    tree = sp.generator_tree(G.state_dict(), G.init_kwargs, G=G)
    sp.write_network_pickle(hub_cache / "brecahad.pkl", {"G_ema": tree})
    G2 = pio.load("stylegan2-ada/brecahad")
    # copied into the cache by hand: found by its name, but nothing vouches for its contents
    assert G2.source == str(hub_cache / "brecahad.pkl") and G2.weights_origin == "trained"
    assert G2.label == "StyleGAN2-ADA · trained weights (brecahad.pkl, not verified, G_ema)"

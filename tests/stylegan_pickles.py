"""Test helper: pickles in the official StyleGAN2-ADA network layout, and a corpus of hostile ones.

Our own writer (design spec 1.2-1.4 and 1.7; no NVIDIA code). Network objects are
:class:`MimicModule` trees whose ``__reduce__`` names ``torch_utils.persistence.
_reconstruct_persistent_obj``, nested kwargs are ``dnnlib.util.EasyDict``; both names are
served by stand-in modules that exist in ``sys.modules`` only while a pickle is being written
(:func:`official_names`). Tensors, parameters and storages are pickled by torch itself, exactly
as in an official file. ``module_src`` is a placeholder (or a test payload), never NVIDIA source.

:func:`malicious_corpus` builds files that a plain ``pickle.load`` would turn into code
execution or a resource bomb, each aimed at a sentinel file, with the refusal expected.
"""

from __future__ import annotations

import builtins
import contextlib
import copyreg
import os
import pickle
import struct
import subprocess
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PLACEHOLDER_SRC = "# artlab test mimic: placeholder module source (no NVlabs code)\n"
BUFFER_NAMES = frozenset({"resample_filter", "noise_const", "w_avg"})
# Module.__dict__ hook entries of current torch (spec 1.3), all empty.
_HOOK_DICTS = (
    "_backward_pre_hooks", "_backward_hooks", "_forward_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_state_dict_hooks",
    "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)


# ------------------------------------------------------------------------------------ writer


def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is ever pickled
    raise RuntimeError("writer-only stand-in: artlab never reconstructs persistent objects this way")


class EasyDict(dict):
    """Writer stand-in for dnnlib.util.EasyDict (a dict subclass, pickled with NEWOBJ + SETITEMS).

    ``py37=True`` pickles it as Python <= 3.10 did once the instance ``__dict__`` existed: the
    same, then ``BUILD`` with an empty dict.
    """

    def __init__(self, *args, py37: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__["_py37"] = py37

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __reduce_ex__(self, protocol):
        return (copyreg.__newobj__, (EasyDict,), {} if self.__dict__.get("_py37") else None, None,
                iter(self.items()))


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
EasyDict.__module__ = "dnnlib.util"


@contextlib.contextmanager
def official_names() -> Iterator[None]:
    """Make ``torch_utils.persistence`` and ``dnnlib.util`` importable while a pickle is written."""
    fakes = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": types.ModuleType("dnnlib.util"),
    }
    fakes["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    fakes["dnnlib.util"].EasyDict = EasyDict
    saved = {name: sys.modules.get(name) for name in fakes}
    sys.modules.update(fakes)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@dataclass
class MimicModule:
    """One persistent network object in the official layout."""

    class_name: str
    params: dict = field(default_factory=dict)  # name -> Tensor or None
    buffers: dict = field(default_factory=dict)
    modules: dict = field(default_factory=dict)  # name -> MimicModule
    init_args: tuple = ()
    init_kwargs: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    module_src: str = PLACEHOLDER_SRC
    legacy_containers: bool = False  # torch 1.7-1.9 wrote OrderedDicts (spec 1.3)
    non_persistent: set = field(default_factory=set)
    extra_state: dict = field(default_factory=dict)  # for hostile variants: merged into the state last
    meta_override: dict = field(default_factory=dict)

    def state(self) -> dict:
        box = OrderedDict if self.legacy_containers else dict
        state: dict = {
            "training": False,
            "_parameters": box((k, None if v is None else torch.nn.Parameter(v, requires_grad=False))
                               for k, v in self.params.items()),
            "_buffers": box(self.buffers),
            "_non_persistent_buffers_set": set(self.non_persistent),
        }
        for i, name in enumerate(_HOOK_DICTS):
            state[name] = OrderedDict()
            if i == 1:
                state["_is_full_backward_hook"] = None
        state["_modules"] = box(self.modules)
        state["_init_args"] = tuple(self.init_args)
        state["_init_kwargs"] = self.init_kwargs
        state.update(self.attrs)
        state.update(self.extra_state)
        return state

    def __reduce__(self):
        meta = {"type": "class", "version": 6, "module_src": self.module_src, "class_name": self.class_name,
                "state": self.state()}
        meta.update(self.meta_override)
        return (_reconstruct_persistent_obj, (meta,))


def _easy(obj, py37: bool = False):
    """Nested kwargs dicts as EasyDict, like the official training script."""
    if isinstance(obj, Mapping):
        return EasyDict(((k, _easy(v, py37)) for k, v in obj.items()), py37=py37)
    return obj


_CHILD_CLASSES = {"synthesis": "SynthesisNetwork", "mapping": "MappingNetwork", "conv0": "SynthesisLayer",
                  "conv1": "SynthesisLayer", "torgb": "ToRGBLayer", "skip": "Conv2dLayer"}


def _class_for(name: str) -> str:
    if name in _CHILD_CLASSES:
        return _CHILD_CLASSES[name]
    if name.startswith("b") and name[1:].isdigit():
        return "SynthesisBlock"
    return "FullyConnectedLayer"  # affine, fc{i}, embed


def _module_attrs(module: torch.nn.Module | None) -> dict:
    """Plain attributes of a live module, float gains as numpy.float64 like the official classes."""
    if module is None:
        return {}
    out = {}
    for k, v in vars(module).items():
        if k.startswith("_") or k == "training" or not isinstance(v, (bool, int, float, str, list, type(None))):
            continue
        if isinstance(v, list) and not all(isinstance(x, int) for x in v):
            continue
        out[k] = np.float64(v) if k.endswith("gain") and isinstance(v, float) else v
    return out


def generator_tree(
    state_dict: Mapping[str, torch.Tensor],
    init_kwargs: Mapping,
    *,
    G: torch.nn.Module | None = None,
    module_src: str = PLACEHOLDER_SRC,
    legacy_containers: bool = False,
    channels_last: bool = False,
    py37_easydict: bool = False,
) -> MimicModule:
    """A Generator in the official layout from a flat state dict with official key names.

    ``G`` (optional, a live network with the same structure) supplies per-module plain
    attributes. ``channels_last`` stores 4-d weights with channels-last strides (the ``--nhwc``
    option of the official training script) to exercise non-contiguous tensor rebuilding.
    ``py37_easydict`` writes the nested kwargs as older Pythons did (with an empty BUILD).
    """
    easy = {k: _easy(v, py37_easydict) for k, v in init_kwargs.items()}  # a plain dict of (Easy)dicts
    root = MimicModule("Generator", init_kwargs=easy, module_src=module_src,
                       legacy_containers=legacy_containers, attrs=_module_attrs(G))
    for key, tensor in state_dict.items():
        *path, leaf = key.split(".")
        node, live = root, G
        for i, part in enumerate(path):
            live = getattr(live, part, None) if live is not None else None
            if part not in node.modules:
                node.modules[part] = MimicModule(_class_for(part), module_src=module_src,
                                                 legacy_containers=legacy_containers, attrs=_module_attrs(live))
            node = node.modules[part]
        t = tensor.detach().clone()
        if channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        (node.buffers if leaf in BUFFER_NAMES else node.params)[leaf] = t
    kw = dict(init_kwargs)
    if "mapping" in root.modules:
        root.modules["mapping"].init_kwargs = {
            **{k: kw[k] for k in ("z_dim", "c_dim", "w_dim") if k in kw}, **dict(kw.get("mapping_kwargs") or {})}
    if "synthesis" in root.modules:
        root.modules["synthesis"].init_kwargs = {
            **{k: kw[k] for k in ("w_dim", "img_resolution", "img_channels") if k in kw},
            **dict(kw.get("synthesis_kwargs") or {})}
    return root


def tiny_discriminator(seed: int = 0) -> MimicModule:
    """A small stand-in 'D' (the loader must parse D even though it is not used for images)."""
    gen = torch.Generator().manual_seed(seed)
    fc = MimicModule("FullyConnectedLayer", params={"weight": torch.randn(1, 8, generator=gen),
                                                    "bias": torch.zeros(1)},
                     init_args=(8, 1), attrs={"activation": "linear", "weight_gain": np.float64(8 ** -0.5),
                                              "bias_gain": 1})
    kwargs = {"c_dim": 0, "img_resolution": 16, "img_channels": 3, "block_kwargs": EasyDict()}
    return MimicModule("Discriminator", modules={"out": fc}, init_kwargs=kwargs,
                       attrs={"c_dim": 0, "img_resolution": 16, "img_channels": 3})


def network_pickle_bytes(
    networks: Mapping[str, object],
    *,
    protocol: int = 4,
    training_set_kwargs: object = None,
    extra: Mapping | None = None,
) -> bytes:
    """A network pickle: ``training_set_kwargs``, then the networks in the order given, then ``extra``."""
    top: dict = {"training_set_kwargs": training_set_kwargs}
    top.update(networks)
    top.update(extra or {})
    with official_names():
        return pickle.dumps(top, protocol=protocol)


def write_network_pickle(path: str | os.PathLike, networks: Mapping[str, object], **kwargs) -> Path:
    """Write :func:`network_pickle_bytes` to ``path``."""
    path = Path(path)
    path.write_bytes(network_pickle_bytes(networks, **kwargs))
    return path


# ------------------------------------------------------------------------------------ shapes (spec section 3)


def expected_generator_shapes(cfg: Mapping) -> dict[str, list[int]]:
    """State-dict keys and shapes of a stylegan2-ada-pytorch Generator, from the tables of spec section 3.

    Written independently of ``artlab.stylegan.networks`` so tests can check both against it.
    """
    syn, mp = dict(cfg.get("synthesis_kwargs") or {}), dict(cfg.get("mapping_kwargs") or {})
    R, ic, Wd, Z, c_dim = cfg["img_resolution"], cfg["img_channels"], cfg["w_dim"], cfg["z_dim"], cfg["c_dim"]
    base, cmax, arch = syn.get("channel_base", 32768), syn.get("channel_max", 512), syn.get("architecture", "skip")
    use_noise = syn.get("use_noise", True)

    def ch(r):
        return min(base // r, cmax)

    shapes: dict[str, list[int]] = {}
    res = [2 ** i for i in range(2, int(np.log2(R)) + 1)]
    for r in res:
        b = f"synthesis.b{r}"
        if r == 4:
            shapes[f"{b}.const"] = [ch(4), 4, 4]
        shapes[f"{b}.resample_filter"] = [4, 4]
        convs = [("conv1", ch(4))] if r == 4 else [("conv0", ch(r // 2)), ("conv1", ch(r))]
        for name, cin in convs:
            shapes[f"{b}.{name}.weight"] = [ch(r), cin, 3, 3]
            if use_noise:
                shapes[f"{b}.{name}.noise_strength"] = []
            shapes[f"{b}.{name}.bias"] = [ch(r)]
            shapes[f"{b}.{name}.resample_filter"] = [4, 4]
            if use_noise:
                shapes[f"{b}.{name}.noise_const"] = [r, r]
            shapes[f"{b}.{name}.affine.weight"] = [cin, Wd]
            shapes[f"{b}.{name}.affine.bias"] = [cin]
        if arch == "skip" or r == R:
            shapes[f"{b}.torgb.weight"] = [ic, ch(r), 1, 1]
            shapes[f"{b}.torgb.bias"] = [ic]
            shapes[f"{b}.torgb.affine.weight"] = [ch(r), Wd]
            shapes[f"{b}.torgb.affine.bias"] = [ch(r)]
        if arch == "resnet" and r > 4:
            shapes[f"{b}.skip.weight"] = [ch(r), ch(r // 2), 1, 1]
            shapes[f"{b}.skip.resample_filter"] = [4, 4]
    L = mp.get("num_layers", 8)
    E = 0 if c_dim == 0 else (mp.get("embed_features") or Wd)
    Hd = mp.get("layer_features") or Wd
    if mp.get("w_avg_beta", 0.995) is not None:
        shapes["mapping.w_avg"] = [Wd]
    if c_dim > 0:
        shapes["mapping.embed.weight"] = [E, c_dim]
        shapes["mapping.embed.bias"] = [E]
    features = [Z + E] + [Hd] * (L - 1) + [Wd]
    for i in range(L):
        shapes[f"mapping.fc{i}.weight"] = [features[i + 1], features[i]]
        shapes[f"mapping.fc{i}.bias"] = [features[i + 1]]
    return shapes


# ------------------------------------------------------------------------------------ raw opcodes

P2, P3, P4 = b"\x80\x02", b"\x80\x03", b"\x80\x04"
MARK, TUPLE, REDUCE, STOP, BUILD, SETITEM, EMPTY_DICT, NONE = b"(", b"t", b"R", b".", b"b", b"s", b"}", b"N"


def u(text: str) -> bytes:
    """BINUNICODE."""
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def by(data: bytes) -> bytes:
    """BINBYTES."""
    return b"B" + struct.pack("<I", len(data)) + data


def i32(n: int) -> bytes:
    """BININT."""
    return b"J" + struct.pack("<i", n)


def g(module: str, name: str) -> bytes:
    """GLOBAL (text form, as protocols 0-3 write it)."""
    return b"c" + f"{module}\n{name}\n".encode()


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL with both operands pushed as strings (protocol 4)."""
    return u(module) + u(name) + b"\x93"


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` via MARK ... TUPLE REDUCE."""
    return func + MARK + b"".join(args) + TUPLE + REDUCE


def raw_dict(items: Mapping[str, bytes]) -> bytes:
    out = EMPTY_DICT
    for k, v in items.items():
        out += u(k) + v + SETITEM
    return out


# ------------------------------------------------------------------------------------ hostile corpus


class Gadget:
    """An object that pickles as ``func(*args)``: what a hostile file uses to run code on load."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _py_write(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').write('pwned')"


def gadgets(sentinel: Path) -> dict[str, Gadget]:
    """Code-execution gadgets, each creating ``sentinel`` when a plain unpickler loads it."""
    return {
        "os_system": Gadget(os.system, f"touch '{sentinel}'"),
        "eval": Gadget(builtins.eval, _py_write(sentinel)),
        "exec": Gadget(builtins.exec, _py_write(sentinel)),
        "subprocess": Gadget(subprocess.call, ["touch", str(sentinel)]),
    }


def getattr_chain(sentinel: Path) -> bytes:
    """``getattr(__import__('os'), 'system')('touch ...')`` in raw opcodes."""
    system = call(g("builtins", "getattr"), call(g("builtins", "__import__"), u("os")), u("system"))
    return P2 + system + MARK + u(f"touch '{sentinel}'") + TUPLE + REDUCE + STOP


def memo_hidden_global(sentinel: Path) -> bytes:
    """Protocol 4: 'os' and 'system' memoized early, fetched later for STACK_GLOBAL."""
    return (P4 + u("os") + b"\x94" + u("system") + b"\x94" + b"0" + b"0"  # push, memoize, pop both
            + b"h\x00" + b"h\x01" + b"\x93" + MARK + u(f"touch '{sentinel}'") + TUPLE + REDUCE + STOP)


def valid_generator_tree(seed: int = 0, **kwargs) -> MimicModule:
    """A small but complete Generator tree (16 px, c_dim 2), independent of artlab.stylegan.networks."""
    cfg = {"z_dim": 8, "c_dim": 2, "w_dim": 8, "img_resolution": 16, "img_channels": 3,
           "mapping_kwargs": {"num_layers": 2},
           "synthesis_kwargs": {"channel_base": 64, "channel_max": 8, "num_fp16_res": 0, "conv_clamp": 256}}
    gen = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(shape, generator=gen) for k, shape in expected_generator_shapes(cfg).items()}
    return generator_tree(sd, cfg, **kwargs)


def _nested(gadget: Gadget, where: str) -> bytes:
    """A valid-looking network pickle with ``gadget`` hidden at ``where``."""
    G = valid_generator_tree()
    networks: dict = {"G": G, "D": tiny_discriminator(), "G_ema": valid_generator_tree(), "augment_pipe": None}
    tsk: object = {"class_name": "training.dataset.ImageFolderDataset", "path": "x.zip"}
    if where == "synthesis_kwargs":
        G.init_kwargs["synthesis_kwargs"]["evil"] = gadget
    elif where == "hook_dict":
        G.modules["synthesis"].modules["b4"].extra_state = {"_forward_hooks": OrderedDict([(0, gadget)])}
    elif where == "training_set_kwargs":
        tsk = {"class_name": "x", "nested": [{"deeper": gadget}]}
    elif where == "D_attribute":
        networks["D"].attrs["evil"] = gadget
    elif where == "augment_pipe":
        networks["augment_pipe"] = gadget
    elif where == "tensor_list_in_kwargs":
        G.init_kwargs["mapping_kwargs"]["evil"] = (1, [torch.zeros(2), {"x": gadget}])
    else:
        raise ValueError(where)
    return network_pickle_bytes(networks, protocol=4, training_set_kwargs=tsk)


# -- storage blobs written by hand (spec 1.4), to corrupt one field at a time


def storage_blob(
    values: np.ndarray | None = None,
    *,
    type_global: tuple[str, str] = ("torch", "FloatStorage"),
    magic: int = 0x1950A86A20F9469CFC6C,
    protocol: int = 1001,
    little_endian: bool = True,
    numel: int | None = None,
    count: int | None = None,
    pid_extra: bytes = b"",
    view_metadata: bytes = NONE,
    keys: list | None = None,
    sys_info_extra: bytes = b"",
    data: bytes | None = None,
) -> bytes:
    """A legacy torch.save stream of one storage; every field can be made wrong."""
    values = np.arange(4, dtype="<f4") if values is None else values
    numel = values.size if numel is None else numel
    count = values.size if count is None else count
    data = values.tobytes() if data is None else data
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": little_endian,
                             "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2)
    if sys_info_extra:
        sys_info = sys_info[:-2] + sys_info_extra + sys_info[-2:]  # before the final SETITEMS + STOP
    pid = (P2 + MARK + u("storage") + g(*type_global) + u("0") + u("cpu") + i32(numel) + view_metadata
           + pid_extra + TUPLE + b"Q" + STOP)
    return (pickle.dumps(magic, protocol=2) + pickle.dumps(protocol, protocol=2) + sys_info + pid
            + pickle.dumps(["0"] if keys is None else keys, protocol=2) + struct.pack("<q", count) + data)


class RawStorage:
    """Pickles as ``torch.storage._load_from_bytes(blob)`` with any blob."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.blob,))


class RawTensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""

    def __init__(self, storage, offset=0, size=(4,), stride=(1,), extra=()) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict(), *extra)

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def with_buffer(value: object, *, protocol: int = 4) -> bytes:
    """A minimal Generator pickle whose one buffer is ``value`` (a RawTensor ...)."""
    G = MimicModule("Generator", buffers={"w_avg": value}, init_kwargs={"z_dim": 1})
    return network_pickle_bytes({"G_ema": G}, protocol=protocol)


def cyclic_module() -> bytes:
    """A network whose ``_modules`` contains itself (built with the memo, after the REDUCE)."""
    state = raw_dict({"training": b"\x89", "_parameters": EMPTY_DICT, "_buffers": EMPTY_DICT,
                      "_modules": EMPTY_DICT + b"\x94", "_init_kwargs": EMPTY_DICT})
    # memo: 0 top dict, 1 the _modules dict (MEMOIZE right after it), 2 the stub
    meta = raw_dict({"type": u("class"), "version": i32(6), "module_src": u(PLACEHOLDER_SRC),
                     "class_name": u("Generator"), "state": state})
    return (P4 + EMPTY_DICT + b"\x94" + u("G_ema") + call(sg("torch_utils.persistence", "_reconstruct_persistent_obj"),
                                                          meta) + b"\x94" + SETITEM
            + b"h\x01" + u("self") + b"h\x02" + SETITEM + b"0" + STOP)


def malicious_corpus(sentinel: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, regex the refusal must match). Executed naively, many create ``sentinel``."""
    gad = gadgets(sentinel)
    corpus: dict[str, tuple[bytes, str]] = {}
    for name, gadget in gad.items():
        corpus[f"{name}_p4"] = (pickle.dumps(gadget, protocol=4), "not part of the StyleGAN2-ADA")
        corpus[f"{name}_p2"] = (pickle.dumps(gadget, protocol=2), "not part of the StyleGAN2-ADA")
    corpus["os_system_global_named"] = (pickle.dumps(gad["os_system"], protocol=3), r"posix\.system")
    corpus["getattr_chain"] = (getattr_chain(sentinel), r"builtins\.getattr")
    corpus["memo_hidden_stack_global"] = (memo_hidden_global(sentinel), r"'os\.system'")
    corpus["stack_global_unresolvable"] = (  # an operand computed by a call: the scan cannot vouch for it
        P4 + call(sg("_codecs", "encode"), u("os"), u("latin1")) + u("system") + b"\x93" + STOP,
        "STACK_GLOBAL at byte")
    corpus["stack_global_dup"] = (P4 + u("os") + b"2" + b"\x93" + STOP, r"'os\.os'")
    corpus["stack_global_under_mark"] = (P4 + u("os") + MARK + u("system") + b"\x93" + STOP, "too few values")
    for where in ("synthesis_kwargs", "hook_dict", "training_set_kwargs", "D_attribute", "augment_pipe",
                  "tensor_list_in_kwargs"):
        corpus[f"nested_{where}"] = (_nested(gad["os_system"], where), r"posix\.system")
    corpus["nested_eval_in_kwargs"] = (_nested(gad["eval"], "synthesis_kwargs"), r"builtins\.eval")
    # protocol 0/1 and the opcodes that build objects of any class
    cmd = f"touch '{sentinel}'".encode()
    corpus["protocol0_classic"] = (b"cos\nsystem\n(S'" + cmd + b"'\ntR.", "protocol header")
    corpus["protocol0_allowed_global"] = (b"ccollections\nOrderedDict\n(tR.", "protocol header")
    corpus["protocol1_header_free"] = (b"]q\x00.", "protocol header")
    corpus["protocol0_after_header_byte"] = (b"\x80" + b"cos\nsystem\n(S'" + cmd + b"'\ntR.", "protocol 99")
    corpus["inst_opcode"] = (P2 + MARK + u(cmd.decode()) + b"ios\nsystem\n" + STOP, "opcode INST")
    corpus["inst_allowed_class"] = (P2 + MARK + b"icollections\nOrderedDict\n" + STOP, "opcode INST")
    corpus["obj_opcode"] = (P2 + MARK + g("os", "system") + u(cmd.decode()) + b"o" + STOP, r"'os\.system'")
    corpus["obj_allowed_class"] = (P2 + MARK + g("collections", "OrderedDict") + b"o" + STOP, "opcode OBJ")
    corpus["text_unicode_opcode"] = (P2 + b"Vabc\n" + STOP, "opcode UNICODE")
    corpus["persistent_id_outer"] = (P2 + u("storage") + b"Q" + STOP, "opcode BINPERSID")
    corpus["persid_text_outer"] = (P2 + b"Pstorage\n" + STOP, "opcode PERSID")
    corpus["ext1_opcode"] = (P2 + b"\x82\x01" + STOP, "opcode EXT1")
    corpus["newobj_ex"] = (P4 + sg("dnnlib.util", "EasyDict") + b")}" + b"\x92" + STOP, "opcode NEWOBJ_EX")
    # globals that look like allowed ones
    lookalikes = [("torch_utils.persistence_x", "_reconstruct_persistent_obj"),
                  ("torch_utils.persistence", "_src_to_module"), ("torch_utils.persistence", "persistent_class"),
                  ("numpy.core.multiarray", "_reconstruct"), ("numpy", "load"), ("torch", "load"),
                  ("torch._utils", "_rebuild_device_tensor_from_numpy"), ("collections", "OrderedDict.fromkeys"),
                  ("builtins", "set.__init__"), ("__builtin__", "eval"), ("dnnlib.util", "open_url"),
                  ("dnnlib", "util.EasyDict"), ("_codecs", "decode"), ("copyreg", "_reconstructor")]
    for module, name in lookalikes:
        corpus[f"lookalike_{module}.{name}"] = (P4 + sg(module, name) + b")" + REDUCE + STOP,
                                                 rf"'{module}\.{name}'".replace("(", r"\("))
    corpus["tf_legacy_tuple"] = (P2 + g("dnnlib.tflib.network", "Network") + b")\x81" + b"\x85" + STOP,
                                 "legacy TensorFlow")
    # allowed callables with arguments they never get in a network pickle
    persist = sg("torch_utils.persistence", "_reconstruct_persistent_obj")
    good_state = raw_dict({"_parameters": EMPTY_DICT, "_buffers": EMPTY_DICT, "_modules": EMPTY_DICT})

    def meta(**fields: bytes) -> bytes:
        base = {"type": u("class"), "version": i32(6), "module_src": u("# x\n"), "class_name": u("Generator"),
                "state": good_state}
        base.update(fields)
        return raw_dict({k: v for k, v in base.items() if v is not None})

    def top(obj: bytes) -> bytes:
        return P4 + EMPTY_DICT + u("G_ema") + obj + SETITEM + STOP

    corpus["persistent_version_5"] = (top(call(persist, meta(version=i32(5)))), "version 5")
    corpus["persistent_extra_key"] = (top(call(persist, meta(code=u("x")))), "unexpected meta")
    corpus["persistent_state_not_dict"] = (top(call(persist, meta(state=u("x")))), "state of type str")
    corpus["persistent_class_name_code"] = (
        top(call(persist, meta(class_name=u(f"__import__('os').system({cmd.decode()!r})")))), "class_name")
    corpus["persistent_two_args"] = (top(call(persist, meta(), meta())), "unexpected meta")
    corpus["build_on_stub"] = (top(call(persist, meta()) + raw_dict({"__class__": u("x")}) + BUILD),
                               "BUILD")
    corpus["build_on_standin"] = (
        top(sg("collections", "OrderedDict") + NONE + raw_dict({"_fn": u("x")}) + b"\x86" + BUILD), "BUILD")
    corpus["bare_allowed_global"] = (top(sg("torch._utils", "_rebuild_tensor_v2")), "bare reference")
    corpus["ordereddict_string_arg"] = (top(call(sg("collections", "OrderedDict"), u("abc"))),
                                        "OrderedDict called with unexpected")
    corpus["set_of_dicts"] = (P3 + EMPTY_DICT + u("G_ema") + call(g("builtins", "set"), b"]" + EMPTY_DICT + b"a")
                              + SETITEM + STOP, "set called with unexpected")
    corpus["codecs_rot13"] = (top(call(sg("_codecs", "encode"), u("abc"), u("rot13"))), "_codecs.encode")
    corpus["numpy_object_dtype"] = (top(call(sg("numpy", "dtype"), u("O8"), b"\x89", b"\x88")),
                                    "not a plain numeric dtype")
    corpus["numpy_structured_dtype_state"] = (
        top(call(sg("numpy", "dtype"), u("f8"), b"\x89", b"\x88")
            + MARK + i32(3) + u("<") + NONE + b"(" + u("a") + TUPLE + EMPTY_DICT + i32(-1) + i32(-1) + i32(0)
            + TUPLE + BUILD), "numpy dtype state")
    corpus["numpy_scalar_wrong_size"] = (
        top(call(sg("numpy._core.multiarray", "scalar"), call(sg("numpy", "dtype"), u("f8"), b"\x89", b"\x88"),
                 by(b"\x00" * 3))), "numpy scalar")
    corpus["rebuild_parameter_of_string"] = (
        top(call(sg("torch._utils", "_rebuild_parameter"), u("x"), b"\x89", call(sg("collections", "OrderedDict")))),
        "_rebuild_parameter with unexpected")
    corpus["easydict_build"] = (top(sg("dnnlib.util", "EasyDict") + b")\x81" + raw_dict({"a": u("b")}) + BUILD),
                                "BUILD")
    # storages and tensors
    blob = storage_blob()
    corpus["storage_type_os_system"] = (with_buffer(RawTensor(RawStorage(storage_blob(type_global=("os", "system"))))),
                                        r"'os\.system'")
    corpus["storage_type_torch_load"] = (
        with_buffer(RawTensor(RawStorage(storage_blob(type_global=("torch", "load"))))), r"'torch\.load'")
    corpus["storage_type_cuda_module"] = (
        with_buffer(RawTensor(RawStorage(storage_blob(type_global=("torch.cuda", "FloatStorage"))))),
        r"'torch\.cuda\.FloatStorage'")
    corpus["storage_gadget_in_sys_info"] = (
        with_buffer(RawTensor(RawStorage(storage_blob(sys_info_extra=u("x") + call(g("os", "system"), u(cmd.decode()))
                                                      )))), r"'os\.system'")
    corpus["storage_wrong_magic"] = (with_buffer(RawTensor(RawStorage(storage_blob(magic=12345)))), "magic")
    corpus["storage_wrong_protocol"] = (with_buffer(RawTensor(RawStorage(storage_blob(protocol=1000)))), "protocol")
    corpus["storage_big_endian"] = (with_buffer(RawTensor(RawStorage(storage_blob(little_endian=False)))),
                                    "little-endian")
    corpus["storage_huge_count"] = (with_buffer(RawTensor(RawStorage(storage_blob(numel=2 ** 31 - 1,
                                                                                   count=2 ** 62)))),
                                    "does not match its header")
    corpus["storage_truncated_data"] = (with_buffer(RawTensor(RawStorage(blob[:-3]))), "does not match its header")
    corpus["storage_extra_data"] = (with_buffer(RawTensor(RawStorage(blob + b"\x00" * 4))), "does not match")
    corpus["storage_pid_view_metadata"] = (
        with_buffer(RawTensor(RawStorage(storage_blob(view_metadata=MARK + i32(0) + i32(4) + TUPLE)))),
        "unexpected persistent id")
    corpus["storage_pid_extra_item"] = (with_buffer(RawTensor(RawStorage(storage_blob(pid_extra=u("x"))))),
                                        "unexpected persistent id")
    corpus["storage_wrong_keys"] = (with_buffer(RawTensor(RawStorage(storage_blob(keys=["0", "1"])))),
                                    "one storage reference")
    corpus["storage_not_bytes"] = (with_buffer(RawTensor(RawStorage("a string"))), "_load_from_bytes with unexpected")
    corpus["tensor_out_of_bounds"] = (with_buffer(RawTensor(RawStorage(blob), size=(5,))), "out of bounds")
    corpus["tensor_offset_out_of_bounds"] = (with_buffer(RawTensor(RawStorage(blob), offset=4, size=(1,))),
                                             "out of bounds")
    corpus["tensor_negative_stride"] = (with_buffer(RawTensor(RawStorage(blob), offset=3, stride=(-1,))),
                                        "_rebuild_tensor_v2 with unexpected")
    corpus["tensor_stride0_memory_bomb"] = (
        with_buffer(RawTensor(RawStorage(blob), size=(2 ** 20, 2 ** 20), stride=(0, 0))), "over the limit")
    corpus["tensor_storage_is_str"] = (with_buffer(RawTensor("not a storage")), "_rebuild_tensor_v2 with unexpected")
    corpus["tensor_metadata"] = (with_buffer(RawTensor(RawStorage(blob), extra=({"conj": True},))),
                                 "_rebuild_tensor_v2 with unexpected")
    # structure: cycles, memo abuse, trailing bytes, deep nesting
    corpus["cyclic_module_tree"] = (cyclic_module(), "cyclic")
    corpus["memo_index_jump"] = (P4 + EMPTY_DICT + b"r\xff\xff\xff\x7f" + STOP, "memo index")
    corpus["memo_get_unknown"] = (P4 + b"h\x05" + STOP, "unknown index")
    good = network_pickle_bytes({"G_ema": valid_generator_tree()})
    corpus["trailing_payload"] = (good + pickle.dumps(gad["os_system"], protocol=4), "after the end")
    deep = valid_generator_tree()
    nest: object = 0
    for _ in range(150):
        nest = [nest]
    deep.init_kwargs["mapping_kwargs"]["deep"] = nest
    corpus["deeply_nested_kwargs"] = (network_pickle_bytes({"G_ema": deep}), "nested too deeply")
    laughs = valid_generator_tree()
    lol: object = "lol"
    for _ in range(40):
        lol = [lol] * 10  # 10**40 items once expanded, a few hundred bytes pickled
    laughs.init_kwargs["mapping_kwargs"]["laughs"] = lol
    corpus["billion_laughs_kwargs"] = (network_pickle_bytes({"G_ema": laughs}), "too many")
    many = valid_generator_tree()
    shared: object = ["lol"] * 1000
    for i in range(300):
        many.modules[f"extra{i}"] = MimicModule("FullyConnectedLayer", attrs={"laughs": shared})
    corpus["laughs_across_modules"] = (network_pickle_bytes({"G_ema": many}), "too many")
    corpus["deep_list_top"] = (P4 + b"]" * 100_000 + b"a" * 99_999 + STOP, "expected a dict")
    corpus["tuple_hash_bomb"] = (P4 + EMPTY_DICT + b")" + b"\x85" * 100_000 + NONE + SETITEM + STOP,
                                 "nested deeper than")
    leaf = MimicModule("FullyConnectedLayer", params={"weight": torch.zeros(1)})
    for _ in range(30):
        leaf = MimicModule("SynthesisBlock", modules={f"m{i}": leaf for i in range(10)})
    corpus["module_dag_bomb"] = (network_pickle_bytes({"G_ema": MimicModule("Generator", modules={"s": leaf})}),
                                 "more than")
    return corpus


def module_src_payload(sentinel: Path) -> str:
    """Module source text that creates ``sentinel`` if anyone executes it."""
    return f"# looks like a network module\n{_py_write(sentinel)}\nclass Generator:\n    pass\n"

"""Second and third passes over a network pickle: rebuild it with stand-ins, then keep only data.

After the scan (:mod:`artlab.stylegan.pickle_io.scan`), a restricted ``pickle.Unpickler``
rebuilds the file: ``find_class`` maps exactly the allowed globals to local stand-ins
(nothing is imported), persistent ids are refused, and each torch storage blob (a legacy
``torch.save`` stream) is parsed by a second restricted unpickler that knows only
``torch.<X>Storage``. Tensors are rebuilt from (offset, size, stride) with bounds checks
and a cap on the bytes produced. Every object handed to the pickle machine refuses
``BUILD`` (``__setstate__`` raises), except numpy's dtype state, which is validated, and an
empty state on the dict stand-ins. The persistent network objects carry their module's
source text (``module_src``): it is hashed, never executed, compiled or imported.

Then only plain data, tensors and network stubs may remain, and each network's module
tree is flattened into a :class:`NetworkRecord`: a state dict with the official key
names and order (spec 1.6 d), the class names and the constructor arguments.
:func:`load_network_pickle` runs the three passes.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from artlab.stylegan.pickle_io.errors import PickleFormatError, UnsafePickleError, short_repr
from artlab.stylegan.pickle_io.scan import (
    ALLOWED_GLOBALS,
    BLOB_PREFIX,
    FORMAT_OPCODES,
    INNER_GLOBALS,
    STORAGE_TYPES,
    global_refusal,
    open_pickle,
    scan_pickle,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_MODULE_DEPTH",
    "MAX_MODULES",
    "MAX_PLAIN_ITEMS",
    "PERSISTENCE_VERSION",
    "LEGACY_MAGIC",
    "LEGACY_PROTOCOL",
    "NETWORK_KEYS",
    "GENERATOR_ARGS",
    "NetworkRecord",
    "load_network_pickle",
]

DEFAULT_MAX_BYTES = 4 << 30  # cap on tensor bytes decoded from one file (spec 1.6 g)
MAX_MODULE_DEPTH = 64
MAX_MODULES = 20_000  # a 1024 px generator has about 150
MAX_PLAIN_ITEMS = 200_000  # values in one network's kwargs and attributes
PERSISTENCE_VERSION = 6  # the only version the official loader accepts (spec 1.2)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch legacy save (spec 1.4)
LEGACY_PROTOCOL = 1001
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")
GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


# --------------------------------------------------------------------------------------------- stand-ins


def _refuse_build(self: object, state: object = None) -> None:
    raise UnsafePickleError(f"BUILD (setting state) on {short_repr(self)} is not part of the network pickle format")


def _build_nothing(self: object, state: object = None) -> None:
    """Accept BUILD with an empty state only (Python <= 3.10 pickles a dict subclass's empty __dict__)."""
    if isinstance(self, type) or not (state is None or (type(state) is dict and not state)):
        _refuse_build(self, state)


class _StandIn:
    """What ``find_class`` returns for an allowed global: a callable that checks its arguments."""

    __slots__ = ("qualname", "_fn")
    __setstate__ = _refuse_build

    def __init__(self, qualname: str, fn: Callable) -> None:
        self.qualname = qualname
        self._fn = fn

    def __call__(self, *args: object) -> object:
        return self._fn(*args)

    def __repr__(self) -> str:
        return f"<stand-in for {self.qualname}>"


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access); converted to dict on output."""

    __slots__ = ()
    __setstate__ = _build_nothing


class _OrderedDict(OrderedDict):
    """What the ``collections.OrderedDict`` stand-in builds: no BUILD state; converted on output."""

    __setstate__ = _build_nothing


class _Stub:
    """An inert persistent network object: class name, its ``__dict__`` and sha256 of ``module_src``."""

    __slots__ = ("class_name", "state", "src_sha256")
    __setstate__ = _refuse_build

    def __init__(self, class_name: str, state: dict, src_sha256: str) -> None:
        self.class_name, self.state, self.src_sha256 = class_name, state, src_sha256

    def __repr__(self) -> str:
        return f"<network object {self.class_name}>"


class _TensorLeaf:
    """A rebuilt tensor (or parameter) while the pickle is being read."""

    __slots__ = ("tensor", "is_param")
    __setstate__ = _refuse_build

    def __init__(self, tensor: Tensor, is_param: bool) -> None:
        self.tensor, self.is_param = tensor, is_param

    def __repr__(self) -> str:
        return f"<tensor {tuple(self.tensor.shape)}>"


class _StorageType:
    """Stand-in for ``torch.<X>Storage`` inside a storage blob: just a dtype tag."""

    __slots__ = ("name", "np_dtype", "torch_dtype")
    __setstate__ = _refuse_build

    def __init__(self, name: str, np_dtype: str, torch_dtype: torch.dtype) -> None:
        self.name, self.np_dtype, self.torch_dtype = name, np.dtype(np_dtype), torch_dtype

    def __repr__(self) -> str:
        return f"<torch.{self.name}>"


_STORAGE_TAGS = {name: _StorageType(name, np_dt, t_dt) for name, (np_dt, t_dt) in STORAGE_TYPES.items()}


class _StorageRef:
    """The persistent id of a storage blob, before its bytes are attached."""

    __slots__ = ("dtype", "key", "numel")
    __setstate__ = _refuse_build

    def __init__(self, dtype: _StorageType, key: str, numel: int) -> None:
        self.dtype, self.key, self.numel = dtype, key, numel

    def __repr__(self) -> str:
        return f"<storage reference {self.key!r}: {self.dtype.name}[{self.numel}]>"


class _Storage:
    """A parsed storage: element type, element count and the raw little-endian bytes."""

    __slots__ = ("dtype", "numel", "data")
    __setstate__ = _refuse_build

    def __init__(self, dtype: _StorageType, numel: int, data: memoryview) -> None:
        self.dtype, self.numel, self.data = dtype, numel, data

    def __repr__(self) -> str:
        return f"<storage {self.dtype.name}[{self.numel}]>"


_NUMPY_SCALAR_SPECS = frozenset({"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"})


class _DType:
    """Stand-in for a numpy dtype of a pickled scalar (``weight_gain`` ...): numeric kinds only."""

    __slots__ = ("spec", "byteorder", "has_state")

    def __init__(self, spec: str) -> None:
        self.spec, self.byteorder, self.has_state = spec, "=", False

    def __setstate__(self, state: object) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        simple = (type(state) is tuple and len(state) in (8, 9) and state[0] in (3, 4)
                  and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                  and state[5:8] == (-1, -1, 0) and (len(state) == 8 or state[8] is None))
        if self.has_state or not simple:
            raise PickleFormatError(f"unexpected numpy dtype state {state!r} (only plain numeric dtypes are allowed)")
        self.byteorder, self.has_state = state[1], True

    def numpy(self) -> np.dtype:
        dtype = np.dtype(self.spec)
        return dtype if self.byteorder in ("|", "=") else dtype.newbyteorder(self.byteorder)


def _is_int(x: object) -> bool:
    return type(x) is int


def _is_empty_mapping(x: object) -> bool:
    return type(x) in (dict, _OrderedDict) and not x  # type: ignore[operator]


@dataclass
class _Context:
    """Per-file state of one load: the file name for messages, the byte budget, blob offsets."""

    where: str
    max_bytes: int
    blob_positions: dict[int, int] = field(default_factory=dict)
    used_bytes: int = 0
    src_hashes: dict[str, str] = field(default_factory=dict)
    file_bytes: int | None = None  # the file's real size: decoded tensors may not exceed twice it (+1 MiB)
    tensor_bytes: int = 0

    def charge(self, nbytes: int, what: str) -> None:
        self.used_bytes += nbytes
        if self.used_bytes > self.max_bytes:
            raise PickleFormatError(
                f"{self.where}: {what} would bring the decoded tensor data to {self.used_bytes} bytes, over the"
                f" limit of {self.max_bytes} (max_bytes); the file is corrupt or hostile, or pass a larger max_bytes")

    def charge_tensor(self, nbytes: int, size: tuple, stride: tuple) -> None:
        """Refuse tensors that decode to more than the file could hold, before they are allocated.

        Each tensor is a view of a storage whose bytes are in the file; only a view that
        repeats its data (a zero stride, or views overlapping) can decode to more. Real
        network pickles decode to about their own size; twice it plus 1 MiB is the cap.
        """
        self.tensor_bytes += nbytes
        if self.file_bytes is None:
            return
        cap = 2 * self.file_bytes + (1 << 20)
        if self.tensor_bytes > cap:
            raise PickleFormatError(
                f"refusing {self.where}: a tensor of size {short_repr(size, 80)} with strides "
                f"{short_repr(stride, 80)} would bring the decoded tensors to {self.tensor_bytes:,} bytes, more "
                f"than this {self.file_bytes:,}-byte file can hold (at most {cap:,}): a view that repeats its data "
                "(zero strides). Nothing was allocated; the file is corrupt or hostile")

    def blob_where(self, blob: bytes) -> str:
        pos = self.blob_positions.get(hash(blob))
        if pos is None:
            return f"a storage blob of {self.where}"
        return f"the storage blob at byte {pos} of {self.where}"

    # -- the stand-ins ---------------------------------------------------------------------------

    def reconstruct_persistent_obj(self, meta: object = None, *extra: object) -> _Stub:
        """Never execs ``module_src``: hashes it and keeps class name + state."""
        expected = {"type", "version", "module_src", "class_name", "state"}
        if extra or type(meta) is not dict or set(meta) != expected:
            keys = sorted(meta) if type(meta) is dict else type(meta).__name__
            raise PickleFormatError(f"{self.where}: persistent object with unexpected meta {keys}; expected "
                                    f"a dict with keys {sorted(expected)}")
        if meta["type"] != "class" or not _is_int(meta["version"]) or meta["version"] != PERSISTENCE_VERSION:
            raise PickleFormatError(f"{self.where}: persistent object of type {meta['type']!r} version "
                                    f"{meta['version']!r}; only type 'class' version {PERSISTENCE_VERSION} exists")
        src, class_name, state = meta["module_src"], meta["class_name"], meta["state"]
        if type(src) is not str or type(class_name) is not str or not class_name.isidentifier():
            raise PickleFormatError(f"{self.where}: persistent object with a malformed module_src or class_name "
                                    f"{class_name!r}")
        if type(state) not in (dict, _OrderedDict):
            raise PickleFormatError(f"{self.where}: persistent {class_name} has state of type "
                                    f"{type(state).__name__}, expected a dict")
        if src not in self.src_hashes:
            self.src_hashes[src] = hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest()
        return _Stub(class_name, state, self.src_hashes[src])

    def ordered_dict(self, *args: object) -> _OrderedDict:
        pairs = args[0] if len(args) == 1 else None
        ok = not args or (type(pairs) is list and all(type(p) in (tuple, list) and len(p) == 2 for p in pairs))
        if not ok:
            raise PickleFormatError(f"{self.where}: collections.OrderedDict called with unexpected arguments "
                                    f"{short_repr(args)}")
        return _OrderedDict(pairs or ())

    def make_set(self, *args: object) -> set:
        items = args[0] if len(args) == 1 else ()
        if len(args) > 1 or type(items) not in (list, tuple) or not all(type(i) in _ATOMS for i in items):
            raise PickleFormatError(f"{self.where}: set called with unexpected arguments {short_repr(args)}")
        return set(items)

    def codecs_encode(self, *args: object) -> bytes:
        if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
            raise PickleFormatError(f"{self.where}: _codecs.encode called with unexpected arguments {short_repr(args)}")
        return args[0].encode("latin1")

    def numpy_dtype(self, *args: object) -> _DType:
        spec = args[0] if args else None
        if (not 1 <= len(args) <= 3 or type(spec) is not str or spec not in _NUMPY_SCALAR_SPECS
                or not all(type(a) is bool for a in args[1:])):
            raise PickleFormatError(f"{self.where}: numpy.dtype{short_repr(args)} is not a plain numeric dtype "
                                    f"(allowed: {sorted(_NUMPY_SCALAR_SPECS)})")
        return _DType(spec)

    def numpy_scalar(self, *args: object) -> int | float | bool:
        if len(args) != 2 or type(args[0]) is not _DType or type(args[1]) is not bytes:
            raise PickleFormatError(f"{self.where}: numpy scalar with unexpected arguments {short_repr(args)}")
        dtype = args[0].numpy()
        if len(args[1]) != dtype.itemsize:
            raise PickleFormatError(f"{self.where}: numpy scalar of {dtype} with {len(args[1])} bytes")
        return np.frombuffer(args[1], dtype=dtype, count=1)[0].item()

    def rebuild_parameter(self, *args: object) -> _TensorLeaf:
        if len(args) == 4:  # _rebuild_parameter_with_state: extra Python attributes, none expected
            args, state = args[:3], args[3]
            if state is not None and not _is_empty_mapping(state):
                raise PickleFormatError(f"{self.where}: parameter with extra state {short_repr(state)}")
        if (len(args) != 3 or type(args[0]) is not _TensorLeaf or args[0].is_param or type(args[1]) is not bool
                or not _is_empty_mapping(args[2])):
            raise PickleFormatError(f"{self.where}: torch._utils._rebuild_parameter with unexpected arguments "
                                    f"{short_repr(args)}")
        return _TensorLeaf(args[0].tensor, True)

    def rebuild_tensor(self, *args: object) -> _TensorLeaf:
        if len(args) not in (6, 7):
            raise PickleFormatError(f"{self.where}: torch._utils._rebuild_tensor_v2 with {len(args)} arguments")
        storage, offset, size, stride, requires_grad, hooks = args[:6]
        metadata = args[6] if len(args) == 7 else None
        if (type(storage) is not _Storage or not _is_int(offset) or offset < 0
                or type(size) is not tuple or type(stride) is not tuple or len(size) != len(stride) or len(size) > 32
                or not all(_is_int(n) and n >= 0 for n in size + stride) or type(requires_grad) is not bool
                or not _is_empty_mapping(hooks) or not (metadata is None or _is_empty_mapping(metadata))):
            raise PickleFormatError(f"{self.where}: torch._utils._rebuild_tensor_v2 with unexpected arguments "
                                    f"{short_repr(args)}")
        numel = math.prod(size)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if numel else offset - 1
        if last >= storage.numel:
            raise PickleFormatError(f"{self.where}: tensor view out of bounds: offset {offset}, size {size}, stride "
                                    f"{stride} reaches element {last} of a storage with {storage.numel}")
        dt = storage.dtype
        self.charge(numel * dt.np_dtype.itemsize, f"a tensor of size {size}")
        self.charge_tensor(numel * dt.np_dtype.itemsize, size, stride)
        native = dt.np_dtype.newbyteorder("=")
        if numel == 0:
            out = np.empty(size, dtype=native)
        else:
            flat = np.frombuffer(storage.data, dtype=dt.np_dtype, count=storage.numel)
            view = np.lib.stride_tricks.as_strided(
                flat[offset:], shape=size, strides=[s * dt.np_dtype.itemsize for s in stride], writeable=False)
            out = view.astype(native, copy=True)  # contiguous copy; keeps 0-d shapes (spec 1.6 c)
        tensor = torch.from_numpy(out)
        if dt.torch_dtype is torch.bfloat16:
            tensor = tensor.view(torch.bfloat16)
        elif dt.torch_dtype is torch.bool:
            tensor = tensor != 0
        return _TensorLeaf(tensor, False)

    def load_from_bytes(self, *args: object) -> _Storage:
        if len(args) != 1 or type(args[0]) is not bytes:
            raise PickleFormatError(f"{self.where}: torch.storage._load_from_bytes with unexpected arguments "
                                    f"{short_repr(args)}")
        return _parse_storage_blob(args[0], self)

    def outer_globals(self) -> dict[tuple[str, str], object]:
        scalar = _StandIn("numpy scalar", self.numpy_scalar)
        rebuild_parameter = _StandIn("torch._utils._rebuild_parameter", self.rebuild_parameter)
        make_set = _StandIn("builtins.set", self.make_set)
        table = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"):
                _StandIn("torch_utils.persistence._reconstruct_persistent_obj", self.reconstruct_persistent_obj),
            ("collections", "OrderedDict"): _StandIn("collections.OrderedDict", self.ordered_dict),
            ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
            ("torch._utils", "_rebuild_tensor_v2"): _StandIn("torch._utils._rebuild_tensor_v2", self.rebuild_tensor),
            ("torch.storage", "_load_from_bytes"): _StandIn("torch.storage._load_from_bytes", self.load_from_bytes),
            ("numpy.core.multiarray", "scalar"): scalar,
            ("numpy._core.multiarray", "scalar"): scalar,
            ("numpy", "dtype"): _StandIn("numpy.dtype", self.numpy_dtype),
            ("dnnlib.util", "EasyDict"): _EasyDict,
            ("builtins", "set"): make_set,
            ("__builtin__", "set"): make_set,
            ("_codecs", "encode"): _StandIn("_codecs.encode", self.codecs_encode),
        }
        assert set(table) == ALLOWED_GLOBALS
        return table


_ATOMS = (type(None), bool, int, float, str, bytes)


class _OuterUnpickler(pickle.Unpickler):
    """The network pickle reader: allowed globals map to stand-ins, nothing is imported."""

    def __init__(self, file: io.BytesIO, ctx: _Context) -> None:
        super().__init__(file)
        self._ctx = ctx
        self._table = ctx.outer_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self._table.get((module, name))
        if found is None:  # the static scan refuses first; this is the backstop
            raise UnsafePickleError(global_refusal(module, name, self._ctx.where))
        return found

    def persistent_load(self, pid: object) -> Any:
        raise UnsafePickleError(f"refusing {self._ctx.where}: persistent id {short_repr(pid)} in the outer stream")


class _InnerUnpickler(pickle.Unpickler):
    """Reads the small pickles of one legacy torch storage blob: only ``torch.<X>Storage`` tags."""

    def __init__(self, file: io.BytesIO, where: str, allow_persistent_id: bool) -> None:
        super().__init__(file)
        self._where, self._allow = where, allow_persistent_id

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_TAGS:
            return _STORAGE_TAGS[name]
        raise UnsafePickleError(global_refusal(module, name, self._where))

    def persistent_load(self, pid: object) -> Any:
        ok = (self._allow and type(pid) is tuple and len(pid) == 6 and pid[0] == "storage"
              and type(pid[1]) is _StorageType and type(pid[2]) is str and type(pid[3]) is str
              and (pid[3] == "cpu" or pid[3].startswith("cuda")) and _is_int(pid[4]) and pid[4] >= 0 and pid[5] is None)
        if not ok:
            raise UnsafePickleError(f"refusing {self._where}: unexpected persistent id {short_repr(pid)}; expected "
                                    "('storage', torch.<X>Storage, key, 'cpu', numel, None)")
        return _StorageRef(pid[1], pid[2], pid[4])


def _parse_storage_blob(blob: bytes, ctx: _Context) -> _Storage:
    """Parse one legacy ``torch.save`` stream of a single storage (spec 1.4) without torch.load."""
    where = ctx.blob_where(blob)
    if blob.startswith(b"PK\x03\x04"):
        raise PickleFormatError(
            f"refusing {where}: it is a zip archive (torch.save's current format), but the storages of a "
            "StyleGAN2-ADA network pickle are legacy torch.save streams (stylegan2-ada-pytorch writes them so); "
            "this file was written by other code. Re-export the network with stylegan2-ada-pytorch, or convert "
            "it to an artlab generator file (artlab.stylegan.pickle_io.save_generator) where you trust it")
    if not blob.startswith(BLOB_PREFIX):
        raise PickleFormatError(
            f"refusing {where}: not a legacy torch storage stream (it should start with {BLOB_PREFIX!r}, the "
            f"pickle header and magic number of torch.save's legacy format; it starts with {blob[:8]!r})")
    values: list[object] = []
    pos = 0
    for i in range(5):  # magic, protocol, sys_info, the persistent reference, the key list
        scan = scan_pickle(blob, pos, where=where, allowed=INNER_GLOBALS, unit=" of the blob",
                     opcodes=FORMAT_OPCODES | {"BINPERSID"} if i == 3 else FORMAT_OPCODES)
        try:
            values.append(_InnerUnpickler(io.BytesIO(blob[pos:scan.end]), where, i == 3).load())
        except PickleFormatError:
            raise
        except Exception as exc:
            raise PickleFormatError(f"{where} is malformed: {type(exc).__name__}: {short_repr(str(exc), 300)}") from exc
        pos = scan.end
    magic, protocol, sys_info, ref, keys = values
    if not (_is_int(magic) and magic == LEGACY_MAGIC and _is_int(protocol) and protocol == LEGACY_PROTOCOL):
        raise PickleFormatError(f"{where}: not a legacy torch storage stream (magic {short_repr(magic)}, "
                                f"protocol {short_repr(protocol)})")
    if type(sys_info) is not dict or sys_info.get("little_endian") is not True:
        raise PickleFormatError(f"{where}: unexpected sys_info {short_repr(sys_info)} "
                                "(only little-endian data is read)")
    if type(ref) is not _StorageRef or keys != [ref.key]:
        raise PickleFormatError(f"{where}: expected one storage reference and its key, got {short_repr(ref)} / "
                                f"{short_repr(keys)}")
    raw = memoryview(blob)[pos:]
    itemsize = ref.dtype.np_dtype.itemsize
    count = int.from_bytes(raw[:8], "little", signed=True) if len(raw) >= 8 else None
    if count != ref.numel or len(raw) - 8 != count * itemsize:
        raise PickleFormatError(
            f"{where}: storage data does not match its header: {ref.numel} x {ref.dtype.name} declared, element"
            f" count {count}, {max(len(raw) - 8, 0)} data bytes (truncated or corrupt)")
    ctx.charge(count * itemsize, f"a {ref.dtype.name} of {count} elements")
    return _Storage(ref.dtype, count, raw[8:])


# --------------------------------------------------------------------------------------------- records


@dataclass(eq=False)
class NetworkRecord:
    """One network of a pickle, as data: what to build and with which weights.

    ``state_dict`` has the official key names and order (parameters, then persistent buffers,
    then children). ``module_classes`` / ``attributes`` map each module path (``""`` for the
    network itself, ``"synthesis.b4"`` ...) to its class name and its plain attributes (spec 1.3).
    ``module_src_sha256`` identifies the embedded source text, which is never run.
    """

    name: str
    class_name: str
    init_args: tuple
    init_kwargs: dict
    state_dict: OrderedDict[str, Tensor]
    module_classes: dict[str, str]
    attributes: dict[str, dict]
    module_src_sha256: str
    path: str

    def __repr__(self) -> str:
        n = sum(t.numel() for t in self.state_dict.values())
        return (f"NetworkRecord({self.name}: {self.class_name}, {len(self.state_dict)} tensors, {n} elements, "
                f"init_kwargs={short_repr(self.init_kwargs, 200)})")

    def generator_kwargs(self) -> dict:
        """``Generator`` constructor arguments in the canonical (stylegan2-ada-pytorch) layout.

        Positional ``_init_args`` are named; synthesis options found at the top level (the
        StyleGAN3-repository layout, spec 1.6 e) move into ``synthesis_kwargs``; options the
        kwargs leave to code defaults are filled from the stored runtime attributes where known.
        """
        if self.class_name != "Generator":
            raise PickleFormatError(f"{self.path}: {self.name} is a {self.class_name}, not a Generator")
        kw = dict(zip(GENERATOR_ARGS, self.init_args))
        kw.update(self.init_kwargs)
        top = self.attributes.get("", {})
        out: dict[str, Any] = {}
        for key in GENERATOR_ARGS:
            value = kw.pop(key, top.get(key))
            if not _is_int(value):
                raise PickleFormatError(f"{self.path}: {self.name} has no integer {key} (init kwargs "
                                        f"{short_repr(self.init_kwargs)})")
            out[key] = value
        mapping = dict(kw.pop("mapping_kwargs", None) or {})
        synthesis = dict(kw.pop("synthesis_kwargs", None) or {})
        synthesis.update(kw)  # flattened layout
        mapping_attrs = self.attributes.get("mapping", {})
        for key in ("num_layers", "w_avg_beta"):
            if key not in mapping and key in mapping_attrs:
                mapping[key] = mapping_attrs[key]
        block = self.attributes.get("synthesis.b4", {})
        if "architecture" not in synthesis and "architecture" in block:
            synthesis["architecture"] = block["architecture"]
        if "conv_clamp" not in synthesis and "conv_clamp" in self.attributes.get("synthesis.b4.conv1", {}):
            synthesis["conv_clamp"] = self.attributes["synthesis.b4.conv1"]["conv_clamp"]
        out["mapping_kwargs"], out["synthesis_kwargs"] = mapping, synthesis
        return out


def _plain(obj: object, where: str, depth: int = 0, budget: list[int] | None = None) -> Any:
    """Stand-in containers -> plain Python (EasyDict/OrderedDict -> dict), tensor leaves -> tensors.

    Shared sub-objects are copied, so the item count is capped: a file can nest references so
    that the expansion is astronomically large ("billion laughs").
    """
    budget = [MAX_PLAIN_ITEMS] if budget is None else budget
    budget[0] -= 1
    if depth > 100 or budget[0] < 0:
        raise PickleFormatError(f"{where}: values nested too deeply or too many of them")
    t = type(obj)
    if t in _ATOMS:
        return obj
    if t in (dict, _OrderedDict, _EasyDict):
        return {k: _plain(v, where, depth + 1, budget) for k, v in obj.items()}  # type: ignore[attr-defined]
    if t in (list, tuple):
        return t(_plain(v, where, depth + 1, budget) for v in obj)  # type: ignore[call-arg,attr-defined]
    if t in (set, frozenset):
        return t(_plain(v, where, depth + 1, budget) for v in obj)  # type: ignore[call-arg,attr-defined]
    if t is _TensorLeaf:
        return obj.tensor  # type: ignore[attr-defined]
    raise PickleFormatError(f"{where}: unexpected {short_repr(obj)} among plain values")


def _check_tree(top: object, ctx: _Context) -> None:
    """Only plain data, tensors and network stubs may come out of the pickle (no callables, no storages).

    Iterative, each object visited once; the path to an object (for the message) is kept as a
    chain of (parent, key) links and spelled out only when something is refused.
    """
    stack: list[tuple[object, tuple | None]] = [(top, None)]
    seen: set[int] = set()

    def spell(crumbs: tuple | None) -> str:
        keys = []
        while crumbs is not None:
            crumbs, key = crumbs
            keys.append(key)
        return "the top-level object" + "".join(reversed(keys))

    while stack:
        obj, crumbs = stack.pop()
        t = type(obj)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if t in (dict, _OrderedDict, _EasyDict):
            items = obj.items()  # type: ignore[attr-defined]
        elif t in (list, tuple):
            items = enumerate(obj)  # type: ignore[arg-type]
        elif t in (set, frozenset):
            items = ((None, v) for v in obj)  # type: ignore[attr-defined]
        elif t is _Stub:
            items = ((f"<{obj.class_name}>", obj.state),)  # type: ignore[attr-defined]
        else:
            bare = t is _StandIn
            what = f"a bare reference to {obj.qualname}" if bare else short_repr(obj)  # type: ignore[attr-defined]
            raise UnsafePickleError(f"refusing {ctx.where}: {what} at {spell(crumbs)}; network pickles hold only "
                                    "plain data, tensors and network objects")
        for k, v in items:
            if t in (dict, _OrderedDict, _EasyDict) and type(k) not in _ATOMS:
                raise UnsafePickleError(f"refusing {ctx.where}: a dict key of type {type(k).__name__} at "
                                        f"{spell(crumbs)}")
            if type(v) not in _ATOMS and type(v) is not _TensorLeaf:
                key = k if isinstance(k, str) and k.startswith("<") else f"[{short_repr(k, 40)}]"
                stack.append((v, (crumbs, key)))


_MODULE_KEYS = ("_parameters", "_buffers", "_modules")


def _flatten(stub: _Stub, prefix: str, rec: dict, ctx: _Context, on_path: tuple[int, ...] = ()) -> None:
    """Depth-first like ``nn.Module.state_dict``: own parameters, own persistent buffers, then children."""
    label = prefix or "<root>"
    rec["modules_left"] -= 1
    if rec["modules_left"] < 0:
        raise PickleFormatError(f"{ctx.where}: more than {MAX_MODULES} modules (shared sub-modules repeated?)")
    if len(on_path) > MAX_MODULE_DEPTH or id(stub) in on_path:
        raise PickleFormatError(f"{ctx.where}: the module tree at {label} is cyclic or deeper than {MAX_MODULE_DEPTH}")
    state = stub.state
    for key in _MODULE_KEYS:
        if type(state.get(key)) not in (dict, _OrderedDict):
            raise PickleFormatError(f"{ctx.where}: module {label} ({stub.class_name}) has no {key} mapping; "
                                    "not a torch module state")
    skip = state.get("_non_persistent_buffers_set", set())
    if type(skip) not in (set, frozenset):
        raise PickleFormatError(f"{ctx.where}: module {label}: _non_persistent_buffers_set is {short_repr(skip)}")
    dot = f"{prefix}." if prefix else ""
    sd = rec["state_dict"]
    for key in ("_parameters", "_buffers"):
        for name, leaf in state[key].items():
            if type(name) is not str or not name or "." in name:
                raise PickleFormatError(f"{ctx.where}: module {label} has a malformed tensor name {short_repr(name)}")
            if leaf is None or (key == "_buffers" and name in skip):
                continue
            if type(leaf) is not _TensorLeaf:
                raise PickleFormatError(f"{ctx.where}: {dot}{name} in {key} is {short_repr(leaf)}, not a tensor")
            if dot + name in sd:
                raise PickleFormatError(f"{ctx.where}: duplicate state dict key {dot}{name}")
            sd[dot + name] = leaf.tensor
    rec["module_classes"][prefix] = stub.class_name
    rec["attributes"][prefix] = {
        k: _plain(v, f"{ctx.where}: {label}.{k}", budget=rec["budget"]) for k, v in state.items()
        if type(k) is str and not k.startswith("_") and k != "training"
    }
    for name, child in state["_modules"].items():
        if child is None:
            continue
        if type(name) is not str or not name or "." in name or type(child) is not _Stub:
            raise PickleFormatError(f"{ctx.where}: module {label} has an unexpected child {short_repr(name)}: "
                                    f"{short_repr(child)}")
        _flatten(child, dot + name, rec, ctx, (*on_path, id(stub)))


def _record(name: str, stub: _Stub, ctx: _Context) -> NetworkRecord:
    budget = [MAX_PLAIN_ITEMS]  # shared by all values of this network (see _plain)
    rec: dict[str, Any] = {"state_dict": OrderedDict(), "module_classes": {}, "attributes": {},
                           "modules_left": MAX_MODULES, "budget": budget}
    _flatten(stub, "", rec, ctx)
    del rec["modules_left"], rec["budget"]
    args, kwargs = stub.state.get("_init_args", ()), stub.state.get("_init_kwargs", {})
    if type(args) not in (tuple, list) or type(kwargs) not in (dict, _OrderedDict, _EasyDict):
        raise PickleFormatError(f"{ctx.where}: {name} has malformed _init_args/_init_kwargs")
    return NetworkRecord(
        name=name, class_name=stub.class_name, init_args=tuple(_plain(args, ctx.where, budget=budget)),
        init_kwargs=_plain(kwargs, ctx.where, budget=budget), module_src_sha256=stub.src_sha256, path=ctx.where,
        **rec)


def load_network_pickle(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, NetworkRecord]:
    """Read an official ``stylegan2-ada-pytorch`` network pickle safely.

    Returns one :class:`NetworkRecord` per network present (``G``, ``D``, ``G_ema``,
    ``augment_pipe``): class name, init kwargs and state dict. Nothing the file contains is
    executed; anything outside the format raises :class:`UnsafePickleError`, a truncated or
    malformed file :class:`PickleFormatError` (both ``ValueError``), naming the file and offset.

    Memory is bounded by the file's real size, whatever it declares: the file is streamed
    (never read whole), a FIFO or device is refused before any read, a file larger than
    ``max_bytes`` is refused before parsing, no length field can make a read allocate more
    than the file holds, and the decoded tensors may not exceed twice the file's size
    (plus 1 MiB): a tensor view that repeats its data (zero strides) is refused before it
    is allocated. Peak memory is about twice the file (the storages it holds, then the
    tensors decoded from them).
    """
    path = Path(path).expanduser()
    with open_pickle(path, max_bytes=max_bytes) as reader:
        ctx = _Context(where=str(path), max_bytes=max_bytes, file_bytes=reader.size)
        scan = scan_pickle(reader, 0, where=ctx.where, allowed=ALLOWED_GLOBALS, opcodes=FORMAT_OPCODES)
        if scan.end != reader.size:
            raise PickleFormatError(f"{path}: {reader.size - scan.end} unexpected bytes after the end of the pickle "
                                    f"(byte {scan.end})")
        ctx.blob_positions = scan.blob_positions
        reader.seek(0)
        try:  # every length in the file was checked against its real size by the scan
            top = _OuterUnpickler(reader.fh, ctx).load()
        except PickleFormatError as exc:
            if ctx.where in str(exc):
                raise
            raise type(exc)(f"refusing {path}: {exc}") from exc  # raised where the file name is not known
        except Exception as exc:  # a structure the stand-ins or the pickle machine reject
            raise PickleFormatError(f"{path} is malformed: {type(exc).__name__}: {short_repr(str(exc), 300)}") from exc
    _check_tree(top, ctx)
    if type(top) is tuple:
        raise PickleFormatError(f"{path}: the top level is a {len(top)}-tuple, as in legacy TensorFlow pickles; "
                                "artlab reads stylegan2-ada-pytorch pickles (a dict with G, D, G_ema)")
    if type(top) not in (dict, _OrderedDict, _EasyDict):
        raise PickleFormatError(f"{path}: the top level is {short_repr(top)}, expected a dict with G, D, G_ema")
    records = {}
    for key in NETWORK_KEYS:
        value = top.get(key)
        if value is None:
            continue
        if type(value) is not _Stub:
            raise PickleFormatError(f"{path}: {key} is {short_repr(value)}, not a network object")
        records[key] = _record(key, value, ctx)
    if not {"G", "G_ema", "D"} & set(records):
        raise PickleFormatError(f"{path}: no network (G, G_ema, D) in the pickle; top-level keys "
                                f"{sorted(map(str, top))}")
    return records

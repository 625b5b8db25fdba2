"""Read StyleGAN2-ADA network pickles without running them; save and load artlab generators.

An official ``stylegan2-ada-pytorch`` pickle (design spec section 1) is one ordinary pickle of a
dict ``{G, D, G_ema, augment_pipe, training_set_kwargs}``. Every network object in it is stored
as ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where ``meta`` carries the
*source text* of the module that defined the class (``module_src``), which the official loader
``exec``s. This module never executes, compiles or imports that text, nor imports any name the
file asks for. It reads the file in three guarded passes:

1. **Static scan** (``pickletools.genops``, nothing built yet): protocol 2-5 only, only the
   opcodes the format uses, only the globals of spec 1.5 (``STACK_GLOBAL`` operands resolved
   through a model of the stack), memo indices in order, tuples nested at most 64 deep, nothing
   after ``STOP``. A refusal names the global or opcode, its byte offset and the file.
2. **Restricted unpickler** (a ``pickle.Unpickler`` subclass): ``find_class`` maps exactly the
   same names to local stand-ins; persistent ids are refused; each torch storage blob (a legacy
   ``torch.save`` stream) is parsed by a second restricted unpickler that knows only
   ``torch.<X>Storage``; tensors are rebuilt from (offset, size, stride) with bounds checks and
   a cap on the bytes produced. Every object handed to the pickle machine refuses ``BUILD``
   (``__setstate__`` raises), except numpy's dtype state, which is validated, and an empty
   state on the dict stand-ins.
3. **Result walk**: only plain data, tensors and network stubs may remain; the module tree is
   flattened into a state dict with the official key names and order (spec 1.6 d).

Memory is bounded by the file's real size, never by what it declares: only a regular file is
opened (a FIFO or device is refused before any read), it is streamed rather than read whole,
no length field can make a read allocate more than the file holds, decoded tensors may not
exceed twice the file (a zero-stride view is refused before it is allocated), and a
generator's configuration is checked against the stored tensors' shapes on torch's ``meta``
device before the network is built (see :func:`load_network_pickle`, :func:`load`).

artlab's own file format (``save_generator``): one ``torch.save`` file (conventionally ``.pt``)
holding ``{"format": "artlab-stylegan2-generator", "version": 1, "config": <JSON text>,
"state_dict": OrderedDict}``; it loads with ``torch.load(weights_only=True)``. The JSON config
holds ``init_kwargs`` (the ``Generator`` constructor arguments), ``network`` (``"G_ema"``...)
and ``weights`` (``"official" | "trained" | "random" | "unknown"``, shown in the label).

``load`` is the one entry point for a generator: an official pickle, an artlab file, a folder
with ``state_dict.pt`` + ``config.json`` (the layout of ``testdata/stylegan2/cond32``), or the
name of an official pickle (``"ffhq"``; fetched the standard way, see ``artlab weights list``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import pickletools
import reprlib
import stat
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from artlab.weights import Provenance

__all__ = [
    "PickleFormatError",
    "UnsafePickleError",
    "GlobalRef",
    "NetworkRecord",
    "ALLOWED_GLOBALS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "WEIGHT_ORIGINS",
    "list_globals",
    "load_network_pickle",
    "save_generator",
    "load",
]

FORMAT_NAME = "artlab-stylegan2-generator"
FORMAT_VERSION = 1
WEIGHT_ORIGINS = ("official", "trained", "random", "unknown")
DEFAULT_MAX_BYTES = 4 << 30  # cap on tensor bytes decoded from one file (spec 1.6 g)
MAX_MODULE_DEPTH = 64
MAX_MODULES = 20_000  # a 1024 px generator has about 150
MAX_TUPLE_DEPTH = 64  # official files nest tuples 2 deep
MAX_PLAIN_ITEMS = 200_000  # values in one network's kwargs and attributes
PERSISTENCE_VERSION = 6  # the only version the official loader accepts (spec 1.2)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch legacy save (spec 1.4)
LEGACY_PROTOCOL = 1001
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")
GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


class PickleFormatError(ValueError):
    """The file is not a network pickle in the expected layout (truncated, corrupt, unexpected structure)."""


class UnsafePickleError(PickleFormatError):
    """The file asks for something the format never needs (a global, opcode or persistent id); nothing ran."""


# --------------------------------------------------------------------------------------------- static scan

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch.storage", "_load_from_bytes"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),  # numpy >= 2 writers
    ("numpy", "dtype"),
    ("dnnlib.util", "EasyDict"),
    ("builtins", "set"),  # protocol <= 3 writes sets as set([...])
    ("__builtin__", "set"),  # protocol 2 with fix_imports
    ("_codecs", "encode"),  # protocol 2 writes bytes as encode(str, 'latin1')
})
_STORAGE_TYPES: dict[str, tuple[str, torch.dtype]] = {  # name -> (numpy dtype of the raw data, torch dtype)
    "FloatStorage": ("<f4", torch.float32),
    "DoubleStorage": ("<f8", torch.float64),
    "HalfStorage": ("<f2", torch.float16),
    "BFloat16Storage": ("<u2", torch.bfloat16),  # numpy has no bfloat16: read the bits, view in torch
    "LongStorage": ("<i8", torch.int64),
    "IntStorage": ("<i4", torch.int32),
    "ShortStorage": ("<i2", torch.int16),
    "CharStorage": ("i1", torch.int8),
    "ByteStorage": ("u1", torch.uint8),
    "BoolStorage": ("u1", torch.bool),  # read as bytes, then != 0: a bool tensor holds only 0 or 1
}
_INNER_GLOBALS = frozenset(("torch", name) for name in _STORAGE_TYPES)

# Opcodes Python's pickler emits at protocols 2-5 for the objects of the format. Everything else
# (INST, OBJ, PERSID, EXT*, NEWOBJ_EX, out-of-band buffers, protocol-0 text forms) is refused.
_FORMAT_OPCODES = frozenset(
    "PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 LONG4 "
    "BINFLOAT SHORT_BINUNICODE BINUNICODE BINUNICODE8 SHORT_BINBYTES BINBYTES BINBYTES8 EMPTY_DICT DICT "
    "SETITEM SETITEMS EMPTY_LIST LIST APPEND APPENDS EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_SET "
    "ADDITEMS FROZENSET BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET GLOBAL STACK_GLOBAL REDUCE BUILD "
    "NEWOBJ".split()
)
_OPCODE_WHY = {
    "INST": "INST builds an instance of any named class",
    "OBJ": "OBJ builds an instance of any class",
    "PERSID": "persistent ids belong inside torch storage blobs only",
    "BINPERSID": "persistent ids belong inside torch storage blobs only",
    "EXT1": "extension codes resolve to arbitrary globals",
    "EXT2": "extension codes resolve to arbitrary globals",
    "EXT4": "extension codes resolve to arbitrary globals",
    "NEWOBJ_EX": "network pickles never use NEWOBJ_EX",
    "NEXT_BUFFER": "out-of-band buffers are not part of the format",
    "READONLY_BUFFER": "out-of-band buffers are not part of the format",
}
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"})
_BYTES_OPS = frozenset({"SHORT_BINBYTES", "BINBYTES", "BINBYTES8"})
_BLOB_PREFIX = b"\x80\x02\x8a\x0a"  # a legacy torch.save stream starts with PROTO 2, LONG1 (magic)
_OTHER = object()  # a stack value that is not a string


@dataclass(frozen=True)
class GlobalRef:
    """A global the pickle names: ``module``, ``name`` and the byte offset of the opcode."""

    module: str
    name: str
    position: int

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class _ScanResult:
    end: int
    globals: list[GlobalRef]
    blob_positions: dict[int, int]  # hash(bytes) -> byte offset of its opcode


def _global_refusal(module: str, name: str, where: str) -> str:
    hint = ""
    if module.startswith("dnnlib.tflib"):
        hint = (" This is a legacy TensorFlow StyleGAN pickle (a (G, D, Gs) tuple of dnnlib.tflib Networks);"
                " artlab reads only stylegan2-ada-pytorch pickles: convert it with NVIDIA's legacy.py on a machine"
                " you trust, or use the PyTorch release of the model.")
    return (f"refusing {where}: it asks for the global '{module}.{name}', which is not part of the StyleGAN2-ADA"
            f" network pickle format.{hint} Nothing in the file was executed; if you did not expect this, the file"
            " may be malicious.")


def _scan(
    data: bytes | _BoundedReader, start: int, *, where: str, allowed: frozenset | None, opcodes: frozenset,
    unit: str = "",
) -> _ScanResult:
    """Walk the opcodes of one pickle from ``start`` without building anything.

    ``allowed=None`` lists globals without judging them (``list_globals``). The scan keeps a
    model of the unpickler's stack (from the opcode signatures in ``pickletools``): for each
    item its string value when it is a string, and its depth of tuple nesting. That resolves
    ``STACK_GLOBAL`` operands (an operand that is not a known string is refused) and bounds
    tuple nesting, because hashing a deeply nested tuple (a dict key) overflows the C stack.
    ``unit`` qualifies byte offsets in messages (" of the blob" for storage blobs).
    ``data`` is the pickle's bytes or a :class:`_BoundedReader` over its file: a file is
    streamed, one argument at a time, and no read asks for more than the file still holds,
    so a length field claiming terabytes costs nothing.
    """
    stream: io.BytesIO | _BoundedReader = io.BytesIO(data) if isinstance(data, bytes) else data
    total = len(data) if isinstance(data, bytes) else data.size
    stream.seek(start)
    memo: dict[int, tuple[object, int]] = {}
    stack: list[tuple[object, int]] = []  # (str value or _OTHER / _MARK, tuple depth)
    found: list[GlobalRef] = []
    blobs: dict[int, int] = {}
    try:
        for op, arg, pos in pickletools.genops(stream):
            name = op.name
            if pos == start and (name != "PROTO" or not 2 <= arg <= 5):
                got = f"protocol {arg}" if name == "PROTO" else "protocol 0 or 1 (no PROTO header)"
                raise PickleFormatError(
                    f"{where}: not a network pickle: {got} at byte {pos}; network pickles use protocol 2 to 5")
            if allowed is not None and name not in opcodes:
                why = _OPCODE_WHY.get(name, "it is not used by network pickles")
                raise UnsafePickleError(
                    f"refusing {where}: opcode {name} at byte {pos}{unit} ({why}). Nothing was executed.")
            popped = _pop_operands(stack, op, f"{where}: malformed pickle at byte {pos}{unit}")
            if name in ("GLOBAL", "STACK_GLOBAL"):
                if name == "GLOBAL":
                    module, _, qual = arg.partition(" ")
                elif all(isinstance(v, str) for v, _ in popped):
                    module, qual = (v for v, _ in popped)  # type: ignore[misc]
                else:
                    raise UnsafePickleError(
                        f"refusing {where}: STACK_GLOBAL at byte {pos}{unit} takes a module/name the scan cannot"
                        " resolve (network pickles push both as strings). Nothing was executed.")
                if allowed is not None and (module, qual) not in allowed:
                    raise UnsafePickleError(_global_refusal(module, qual, f"{where} (byte {pos}{unit})"))
                found.append(GlobalRef(module, qual, pos))
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                if arg not in memo:
                    raise PickleFormatError(f"{where}: memo fetch of unknown index {arg} at byte {pos}{unit}")
                stack.append(memo[arg])
                continue
            elif name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
                index = len(memo) if name == "MEMOIZE" else arg
                if index > len(memo) or not (stack or popped):  # the pickler numbers the memo 0, 1, 2...
                    raise PickleFormatError(f"{where}: memo index {index} out of order at byte {pos}{unit}")
                item = popped[0] if popped else stack[-1]
                if item[0] is _MARK:
                    raise PickleFormatError(f"{where}: a MARK memoized at byte {pos}{unit}")
                memo[index] = item
                stack.extend(popped)
                continue
            elif name == "FRAME" and arg > total - pos:
                raise PickleFormatError(f"{where}: truncated: a frame at byte {pos} announces {arg} bytes, "
                                        f"only {total - pos} remain")
            elif name in _BYTES_OPS and len(arg) > 64 and arg.startswith(_BLOB_PREFIX):
                blobs.setdefault(hash(arg), pos)
            if name == "DUP":
                stack.extend(popped * 2)
            elif name == "MARK":
                stack.append((_MARK, 0))
            elif op.stack_after:
                value = arg if name in _STRING_OPS else _OTHER
                depth = 1 + max((d for _, d in popped), default=0) if name in _NESTING_OPS else 0
                if depth > MAX_TUPLE_DEPTH:
                    raise PickleFormatError(f"{where}: tuples nested deeper than {MAX_TUPLE_DEPTH} at byte "
                                            f"{pos}{unit}; network pickles never nest so deep")
                stack.extend([(value, depth)] * len(op.stack_after))
            if name == "STOP":
                break
    except PickleFormatError:
        raise
    except ValueError as exc:  # pickletools: truncated argument, no STOP, unknown opcode, bad UTF-8
        raise PickleFormatError(f"{where} is truncated or corrupt: {exc}") from exc
    return _ScanResult(end=stream.tell(), globals=found, blob_positions=blobs)


_MARK = object()  # a MARK on the modelled stack
_NESTING_OPS = frozenset({"EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "FROZENSET"})


def _pop_operands(stack: list[tuple[object, int]], op: pickletools.OpcodeInfo, where: str) -> list:
    """Remove what ``op`` consumes from the modelled stack (items above the top mark for mark opcodes)."""
    before = op.stack_before
    if op.name == "POP" and stack and stack[-1][0] is _MARK:  # POP discards a mark when one is on top
        stack.pop()
        return []
    if pickletools.markobject in before:
        marks = [i for i, (v, _) in enumerate(stack) if v is _MARK]
        if not marks:
            raise PickleFormatError(f"{where}: {op.name} without a MARK")
        top = marks[-1]
        items = stack[top + 1:]
        extra = before.index(pickletools.markobject)  # e.g. the list under the mark for APPENDS
        if top < extra or any(v is _MARK for v, _ in stack[top - extra:top]):
            raise PickleFormatError(f"{where}: {op.name} with nothing to add to")
        del stack[top - extra:]
        return items
    n = len(before)
    if len(stack) < n or any(v is _MARK for v, _ in stack[len(stack) - n:]):
        raise PickleFormatError(f"{where}: {op.name} finds too few values on the stack")
    popped = stack[len(stack) - n:]
    del stack[len(stack) - n:]
    return popped


def list_globals(source: str | os.PathLike | bytes) -> list[GlobalRef]:
    """Every global the outer pickle names, in stream order, without loading or judging anything."""
    if isinstance(source, bytes):
        return _scan(source, 0, where="the data", allowed=None, opcodes=_FORMAT_OPCODES).globals
    path = Path(source).expanduser()
    with _open_pickle(path, max_bytes=None) as reader:
        return _scan(reader, 0, where=str(path), allowed=None, opcodes=_FORMAT_OPCODES).globals


class _BoundedReader:
    """The open file of a pickle, for ``pickletools.genops``: reads stop at the file's real size.

    ``read(n)`` never asks the file for more than remains (CPython's buffered reader
    allocates ``n`` bytes up front, so a length field of 2**60 would), and ``readline``
    reads at most 64 KiB (text arguments of the format are short names), so the scan's
    memory is bounded by the largest real argument, whatever the file declares.
    """

    _LINE = 1 << 16

    def __init__(self, fh: io.BufferedReader, size: int) -> None:
        self.fh, self.size = fh, size

    def tell(self) -> int:
        return self.fh.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.fh.seek(pos, whence)

    def _left(self) -> int:
        return max(0, self.size - self.fh.tell())

    def read(self, n: int | None = -1) -> bytes:
        left = self._left()
        return self.fh.read(left if n is None or n < 0 else min(n, left))

    def readline(self, limit: int | None = -1) -> bytes:
        cap = min(self._left(), self._LINE if limit is None or limit < 0 else limit)
        return self.fh.readline(cap)

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> _BoundedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------- stand-ins


def _refuse_build(self: object, state: object = None) -> None:
    raise UnsafePickleError(f"BUILD (setting state) on {_short(self)} is not part of the network pickle format")


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


_STORAGE_TAGS = {name: _StorageType(name, np_dt, t_dt) for name, (np_dt, t_dt) in _STORAGE_TYPES.items()}


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
                f"refusing {self.where}: a tensor of size {_short(size, 80)} with strides {_short(stride, 80)} would "
                f"bring the decoded tensors to {self.tensor_bytes:,} bytes, more than this {self.file_bytes:,}-byte "
                f"file can hold (at most {cap:,}): a view that repeats its data (zero strides). Nothing was "
                "allocated; the file is corrupt or hostile")

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
                                    f"{_short(args)}")
        return _OrderedDict(pairs or ())

    def make_set(self, *args: object) -> set:
        items = args[0] if len(args) == 1 else ()
        if len(args) > 1 or type(items) not in (list, tuple) or not all(type(i) in _ATOMS for i in items):
            raise PickleFormatError(f"{self.where}: set called with unexpected arguments {_short(args)}")
        return set(items)

    def codecs_encode(self, *args: object) -> bytes:
        if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
            raise PickleFormatError(f"{self.where}: _codecs.encode called with unexpected arguments {_short(args)}")
        return args[0].encode("latin1")

    def numpy_dtype(self, *args: object) -> _DType:
        spec = args[0] if args else None
        if (not 1 <= len(args) <= 3 or type(spec) is not str or spec not in _NUMPY_SCALAR_SPECS
                or not all(type(a) is bool for a in args[1:])):
            raise PickleFormatError(f"{self.where}: numpy.dtype{_short(args)} is not a plain numeric dtype "
                                    f"(allowed: {sorted(_NUMPY_SCALAR_SPECS)})")
        return _DType(spec)

    def numpy_scalar(self, *args: object) -> int | float | bool:
        if len(args) != 2 or type(args[0]) is not _DType or type(args[1]) is not bytes:
            raise PickleFormatError(f"{self.where}: numpy scalar with unexpected arguments {_short(args)}")
        dtype = args[0].numpy()
        if len(args[1]) != dtype.itemsize:
            raise PickleFormatError(f"{self.where}: numpy scalar of {dtype} with {len(args[1])} bytes")
        return np.frombuffer(args[1], dtype=dtype, count=1)[0].item()

    def rebuild_parameter(self, *args: object) -> _TensorLeaf:
        if len(args) == 4:  # _rebuild_parameter_with_state: extra Python attributes, none expected
            args, state = args[:3], args[3]
            if state is not None and not _is_empty_mapping(state):
                raise PickleFormatError(f"{self.where}: parameter with extra state {_short(state)}")
        if (len(args) != 3 or type(args[0]) is not _TensorLeaf or args[0].is_param or type(args[1]) is not bool
                or not _is_empty_mapping(args[2])):
            raise PickleFormatError(f"{self.where}: torch._utils._rebuild_parameter with unexpected arguments "
                                    f"{_short(args)}")
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
                                    f"{_short(args)}")
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
                                    f"{_short(args)}")
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


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80


def _short(obj: object, limit: int = 120) -> str:
    """A bounded repr for messages (depth- and size-limited: the objects come from the file)."""
    try:
        text = _REPR.repr(obj)
    except Exception:  # noqa: BLE001 - a message must never fail
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _OuterUnpickler(pickle.Unpickler):
    """The network pickle reader: allowed globals map to stand-ins, nothing is imported."""

    def __init__(self, file: io.BytesIO, ctx: _Context) -> None:
        super().__init__(file)
        self._ctx = ctx
        self._table = ctx.outer_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self._table.get((module, name))
        if found is None:  # the static scan refuses first; this is the backstop
            raise UnsafePickleError(_global_refusal(module, name, self._ctx.where))
        return found

    def persistent_load(self, pid: object) -> Any:
        raise UnsafePickleError(f"refusing {self._ctx.where}: persistent id {_short(pid)} in the outer stream")


class _InnerUnpickler(pickle.Unpickler):
    """Reads the small pickles of one legacy torch storage blob: only ``torch.<X>Storage`` tags."""

    def __init__(self, file: io.BytesIO, where: str, allow_persistent_id: bool) -> None:
        super().__init__(file)
        self._where, self._allow = where, allow_persistent_id

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_TAGS:
            return _STORAGE_TAGS[name]
        raise UnsafePickleError(_global_refusal(module, name, self._where))

    def persistent_load(self, pid: object) -> Any:
        ok = (self._allow and type(pid) is tuple and len(pid) == 6 and pid[0] == "storage"
              and type(pid[1]) is _StorageType and type(pid[2]) is str and type(pid[3]) is str
              and (pid[3] == "cpu" or pid[3].startswith("cuda")) and _is_int(pid[4]) and pid[4] >= 0 and pid[5] is None)
        if not ok:
            raise UnsafePickleError(f"refusing {self._where}: unexpected persistent id {_short(pid)}; expected "
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
    if not blob.startswith(_BLOB_PREFIX):
        raise PickleFormatError(
            f"refusing {where}: not a legacy torch storage stream (it should start with {_BLOB_PREFIX!r}, the "
            f"pickle header and magic number of torch.save's legacy format; it starts with {blob[:8]!r})")
    values: list[object] = []
    pos = 0
    for i in range(5):  # magic, protocol, sys_info, the persistent reference, the key list
        scan = _scan(blob, pos, where=where, allowed=_INNER_GLOBALS, unit=" of the blob",
                     opcodes=_FORMAT_OPCODES | {"BINPERSID"} if i == 3 else _FORMAT_OPCODES)
        try:
            values.append(_InnerUnpickler(io.BytesIO(blob[pos:scan.end]), where, i == 3).load())
        except PickleFormatError:
            raise
        except Exception as exc:
            raise PickleFormatError(f"{where} is malformed: {type(exc).__name__}: {_short(str(exc), 300)}") from exc
        pos = scan.end
    magic, protocol, sys_info, ref, keys = values
    if not (_is_int(magic) and magic == LEGACY_MAGIC and _is_int(protocol) and protocol == LEGACY_PROTOCOL):
        raise PickleFormatError(f"{where}: not a legacy torch storage stream (magic {_short(magic)}, "
                                f"protocol {_short(protocol)})")
    if type(sys_info) is not dict or sys_info.get("little_endian") is not True:
        raise PickleFormatError(f"{where}: unexpected sys_info {_short(sys_info)} (only little-endian data is read)")
    if type(ref) is not _StorageRef or keys != [ref.key]:
        raise PickleFormatError(f"{where}: expected one storage reference and its key, got {_short(ref)} / "
                                f"{_short(keys)}")
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
                f"init_kwargs={_short(self.init_kwargs, 200)})")

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
                                        f"{_short(self.init_kwargs)})")
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
    raise PickleFormatError(f"{where}: unexpected {_short(obj)} among plain values")


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
            what = f"a bare reference to {obj.qualname}" if t is _StandIn else _short(obj)  # type: ignore[attr-defined]
            raise UnsafePickleError(f"refusing {ctx.where}: {what} at {spell(crumbs)}; network pickles hold only "
                                    "plain data, tensors and network objects")
        for k, v in items:
            if t in (dict, _OrderedDict, _EasyDict) and type(k) not in _ATOMS:
                raise UnsafePickleError(f"refusing {ctx.where}: a dict key of type {type(k).__name__} at "
                                        f"{spell(crumbs)}")
            if type(v) not in _ATOMS and type(v) is not _TensorLeaf:
                key = k if isinstance(k, str) and k.startswith("<") else f"[{_short(k, 40)}]"
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
        raise PickleFormatError(f"{ctx.where}: module {label}: _non_persistent_buffers_set is {_short(skip)}")
    dot = f"{prefix}." if prefix else ""
    sd = rec["state_dict"]
    for key in ("_parameters", "_buffers"):
        for name, leaf in state[key].items():
            if type(name) is not str or not name or "." in name:
                raise PickleFormatError(f"{ctx.where}: module {label} has a malformed tensor name {_short(name)}")
            if leaf is None or (key == "_buffers" and name in skip):
                continue
            if type(leaf) is not _TensorLeaf:
                raise PickleFormatError(f"{ctx.where}: {dot}{name} in {key} is {_short(leaf)}, not a tensor")
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
            raise PickleFormatError(f"{ctx.where}: module {label} has an unexpected child {_short(name)}: "
                                    f"{_short(child)}")
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


def _open_regular(path: Path) -> tuple[io.BufferedReader, int]:
    """``path`` opened for reading, and its size, if it is a regular file; refused otherwise, at once.

    Opened non-blocking and checked on the descriptor (``fstat``): a FIFO named ``.pkl``
    would otherwise block the open (or the read) forever, and a device such as
    ``/dev/zero`` would never end.
    """
    if path.is_dir():
        raise PickleFormatError(f"{path} is a folder, not a network pickle")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)  # FileNotFoundError / PermissionError say what is wrong
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "not a regular file (a device or socket)"
            raise PickleFormatError(f"refusing {path}: it is {kind}, not a file; reading it could block or never "
                                    "end. Pass the path of the .pkl file itself")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def _open_pickle(path: Path, *, max_bytes: int | None) -> _BoundedReader:
    """The network pickle at ``path``, opened for streaming, after the checks that need no parsing.

    Refused at once: not a regular file, empty, larger than ``max_bytes`` (its tensors could
    not fit under that cap: a network pickle is almost all tensor data), a zip archive or
    anything that does not start like a pickle. Nothing is read beyond the first bytes.
    """
    fh, size = _open_regular(path)
    try:
        if size == 0:
            raise PickleFormatError(f"{path} is empty (0 bytes): an interrupted download? Fetch it again")
        if max_bytes is not None and size > max_bytes:
            raise PickleFormatError(
                f"{path} is {size:,} bytes, more than the {max_bytes:,} bytes of tensor data a load may decode "
                f"(max_bytes); nothing was read. If you trust the file, pass a larger max_bytes")
        head = fh.read(8)
        if head.startswith(b"PK\x03\x04"):
            raise PickleFormatError(f"{path} is a torch.save zip archive, not a StyleGAN2-ADA network pickle; "
                                    "artlab generator files and state dicts load with artlab.stylegan.pickle_io.load")
        if head[:1] != b"\x80":
            raise PickleFormatError(f"{path} is not a network pickle (it does not start with a pickle protocol "
                                    f"header; first bytes {head!r})")
        fh.seek(0)
        return _BoundedReader(fh, size)
    except BaseException:
        fh.close()
        raise


def _file_head(path: Path, n: int = 4) -> bytes:
    """The first ``n`` bytes of a regular file (a FIFO or device is refused, never read)."""
    fh, _ = _open_regular(path)
    with fh:
        return fh.read(n)


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
    with _open_pickle(path, max_bytes=max_bytes) as reader:
        ctx = _Context(where=str(path), max_bytes=max_bytes, file_bytes=reader.size)
        scan = _scan(reader, 0, where=ctx.where, allowed=ALLOWED_GLOBALS, opcodes=_FORMAT_OPCODES)
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
            raise PickleFormatError(f"{path} is malformed: {type(exc).__name__}: {_short(str(exc), 300)}") from exc
    _check_tree(top, ctx)
    if type(top) is tuple:
        raise PickleFormatError(f"{path}: the top level is a {len(top)}-tuple, as in legacy TensorFlow pickles; "
                                "artlab reads stylegan2-ada-pytorch pickles (a dict with G, D, G_ema)")
    if type(top) not in (dict, _OrderedDict, _EasyDict):
        raise PickleFormatError(f"{path}: the top level is {_short(top)}, expected a dict with G, D, G_ema")
    records = {}
    for key in NETWORK_KEYS:
        value = top.get(key)
        if value is None:
            continue
        if type(value) is not _Stub:
            raise PickleFormatError(f"{path}: {key} is {_short(value)}, not a network object")
        records[key] = _record(key, value, ctx)
    if not {"G", "G_ema", "D"} & set(records):
        raise PickleFormatError(f"{path}: no network (G, G_ema, D) in the pickle; top-level keys "
                                f"{sorted(map(str, top))}")
    return records


# --------------------------------------------------------------------------------------------- artlab format


def _origin_words(origin: str) -> str:
    return {"official": "official NVIDIA weights", "trained": "trained weights", "random": "random init",
            "unknown": "weights of unknown origin"}[origin]


def _pickle_origin(path: Path) -> tuple[str, str, Provenance | None]:
    """Whether a network pickle holds official NVIDIA weights, judged by its contents, never its name.

    Any file can be called ``ffhq.pkl``, and NVIDIA publishes no checksums to compare it
    with. So "official" needs artlab's provenance record beside the file
    (:func:`artlab.weights.provenance`, valid only while the file keeps the sha256 it pins)
    saying that artlab downloaded it from the published URL of that pickle, or that its
    contents matched a published hash. Everything else is "trained" weights: an import of
    ``ffhq.pkl`` is described as "imported as ffhq.pkl, not verified, sha256 …", and a file
    with an official name but no record as "ffhq.pkl, not verified".

    Returns (origin, the words naming the file in the label, the provenance record or None).
    """
    from artlab.stylegan.pretrained import find_official, official_file
    from artlab.weights import provenance

    record = provenance(path)
    if record is not None:
        official = find_official(record.key)
        if official is not None and (record.verified or (record.how == "downloaded"
                                                         and record.source == official_file(official.name).url)):
            return "official", path.name, record
        if record.how == "imported":
            return "trained", record.describe(), record
    return "trained", f"{path.name}, not verified" if find_official(path.name) else path.name, record


def save_generator(G: nn.Module | NetworkRecord, path: str | os.PathLike, *, weights: str | None = None) -> Path:
    """Write a generator as one ``torch.save`` file that ``torch.load(weights_only=True)`` reads.

    ``G`` is an ``artlab.stylegan.networks.Generator`` (its ``init_kwargs`` are stored) or a
    :class:`NetworkRecord` from an official pickle (converted without building the network).
    ``weights`` records their origin (one of ``WEIGHT_ORIGINS``); by default it comes from
    ``G.weights_origin`` / ``G.pretrained`` (a network with ``pretrained=False`` is ``"random"``).
    The file is written atomically; :func:`load` reads it back.
    """
    path = Path(path).expanduser()
    if isinstance(G, NetworkRecord):
        kwargs, tensors, network = G.generator_kwargs(), G.state_dict, G.name
        default = _pickle_origin(Path(G.path))[0]  # by the pickle's provenance record, not its name
        source = Path(G.path).name
    else:
        kwargs = getattr(G, "init_kwargs", None)
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"{type(G).__name__} has no init_kwargs; save an artlab.stylegan Generator")
        tensors, network = G.state_dict(), getattr(G, "network", "G_ema")
        default = getattr(G, "weights_origin", None) or ("trained" if getattr(G, "pretrained", False) else "random")
        source = getattr(G, "source", "")
    origin = weights or default
    if origin not in WEIGHT_ORIGINS:
        raise ValueError(f"weights={origin!r}; expected one of {WEIGHT_ORIGINS}")
    config = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "class_name": "Generator", "network": network,
              "weights": origin, "source": str(source), "init_kwargs": dict(kwargs)}
    try:
        text = json.dumps(config, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the generator configuration is not plain JSON data: {exc}") from exc
    state = OrderedDict((k, v.detach().to("cpu").contiguous().clone()) for k, v in tensors.items())
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": text, "state_dict": state}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _torch_load(path: Path) -> Any:
    from artlab.weights import torch_load_reason  # the reason without torch's "weights_only=False" advice

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global
        raise UnsafePickleError(f"refusing {path}: torch.load(weights_only=True) rejected it: "
                                f"{torch_load_reason(exc)}") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise PickleFormatError(f"{path} is not a readable torch file (truncated or corrupt?): "
                                f"{torch_load_reason(exc)}") from exc


def _check_state_dict(sd: object, where: str) -> OrderedDict[str, Tensor]:
    if not isinstance(sd, Mapping) or not all(type(k) is str and isinstance(v, Tensor) for k, v in sd.items()):
        raise PickleFormatError(f"{where}: the state dict is not a mapping of names to tensors")
    return OrderedDict(sd)


def _read_own_file(path: Path) -> tuple[dict, OrderedDict]:
    obj = _torch_load(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise PickleFormatError(
            f"{path} is a torch file but not an artlab generator file (no 'format': {FORMAT_NAME!r}). A bare "
            "state dict loads from a folder holding it as state_dict.pt next to a config.json with the init kwargs")
    if obj.get("version") != FORMAT_VERSION:
        raise PickleFormatError(f"{path}: artlab generator file version {obj.get('version')!r}; this artlab reads "
                                f"version {FORMAT_VERSION} (upgrade artlab)")
    try:
        config = json.loads(obj["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PickleFormatError(f"{path}: malformed config: {exc}") from exc
    if not isinstance(config, dict):
        raise PickleFormatError(f"{path}: the config is not a JSON object")
    return config, _check_state_dict(obj.get("state_dict"), str(path))


def _read_folder(folder: Path) -> tuple[dict, OrderedDict]:
    missing = [n for n in ("state_dict.pt", "config.json") if not (folder / n).is_file()]
    if missing:
        raise PickleFormatError(f"{folder} is a folder without {' and '.join(missing)}; a generator folder holds "
                                "state_dict.pt (torch.save of the state dict) and config.json (the init kwargs)")
    try:
        config = json.loads((folder / "config.json").read_text())
    except ValueError as exc:
        raise PickleFormatError(f"{folder / 'config.json'} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise PickleFormatError(f"{folder / 'config.json'} does not hold a JSON object")
    sd = _check_state_dict(_torch_load(folder / "state_dict.pt"), str(folder / "state_dict.pt"))
    return config, sd


def _config_kwargs(config: dict, where: str) -> dict:
    """The Generator kwargs of a config: ``init_kwargs`` (artlab files) or the top-level keys (testdata)."""
    source = config.get("init_kwargs", config)
    if not isinstance(source, dict):
        raise PickleFormatError(f"{where}: init_kwargs is not a JSON object")
    kwargs = {k: source[k] for k in (*GENERATOR_ARGS, "mapping_kwargs", "synthesis_kwargs") if k in source}
    missing = [k for k in GENERATOR_ARGS if k not in kwargs]
    if missing:
        raise PickleFormatError(f"{where}: the config lacks {missing} (the Generator constructor arguments)")
    return kwargs


def _config_origin(config: dict) -> str:
    if config.get("weights") in WEIGHT_ORIGINS:
        return config["weights"]
    if "randomization" in config or "construction_seed" in config:  # reference networks built from a seed
        return "random"
    return "unknown"


def _check_declared_shapes(kwargs: dict, state_dict: Mapping[str, Tensor], where: str) -> None:
    """Refuse a configuration whose network does not have exactly the stored tensors, before building it.

    The configuration comes from the file too: built for real, ``img_resolution=2**20``
    or ``channel_max=2**30`` would allocate (and randomly initialise) gigabytes before
    ``load_state_dict`` found that the weights do not fit. So the network is first built
    on torch's ``meta`` device (shapes only, no memory) and its state dict's names and
    shapes are compared with the stored ones; layer counts that could not possibly match
    the stored tensors are refused before even that.
    """
    from artlab.stylegan.networks import Generator

    n = len(state_dict)
    mapping = kwargs.get("mapping_kwargs")
    layers = mapping.get("num_layers") if isinstance(mapping, dict) else None
    resolution = kwargs.get("img_resolution")
    if (type(layers) is int and layers > n) or (type(resolution) is int and resolution.bit_length() > n + 2):
        raise PickleFormatError(
            f"{where}: the weights do not fit the configuration {_short(kwargs, 300)}: it declares more layers "
            f"(img_resolution {resolution!r}, mapping num_layers {layers!r}) than the file has tensors ({n})")
    try:
        with torch.device("meta"):
            shell = Generator(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PickleFormatError(f"{where}: artlab's Generator does not accept the stored configuration "
                                f"{_short(kwargs, 300)}: {exc}") from exc
    except (RuntimeError, OverflowError, MemoryError) as exc:
        raise PickleFormatError(f"{where}: the stored configuration {_short(kwargs, 300)} declares impossible "
                                f"shapes: {type(exc).__name__}: {_short(str(exc), 200)}") from exc
    declared = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state_dict.items()}
    problems = [f"missing {k}" for k in declared if k not in stored]
    problems += [f"unexpected {k}" for k in stored if k not in declared]
    problems += [f"{k} is {list(stored[k])}, the configuration says {list(shape)}"
                 for k, shape in declared.items() if k in stored and stored[k] != shape]
    if problems:
        more = f" … and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise PickleFormatError(f"{where}: the weights do not fit the configuration {_short(kwargs, 300)}: "
                                + "; ".join(problems[:8]) + more)


def _build_generator(kwargs: dict, state_dict: Mapping[str, Tensor], where: str) -> nn.Module:
    from artlab.stylegan.networks import Generator

    _check_declared_shapes(kwargs, state_dict, where)  # nothing allocated for a configuration that cannot fit
    try:
        G = Generator(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PickleFormatError(f"{where}: artlab's Generator does not accept the stored configuration "
                                f"{_short(kwargs, 300)}: {exc}") from exc
    try:
        G.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise PickleFormatError(f"{where}: the weights do not fit the configuration {_short(kwargs, 300)}: "
                                f"{exc}") from exc
    return G


def _resolve(path: str | os.PathLike) -> Path:
    candidate = Path(path).expanduser()
    if candidate.exists():
        return candidate
    from artlab.stylegan.pretrained import OFFICIAL_PICKLES, fetch, find_official

    if isinstance(path, str) and "/" not in path.removeprefix("stylegan2-ada/") and find_official(path):
        return Path(fetch(path))  # cached, downloaded, or WeightsNotFoundError with instructions
    raise FileNotFoundError(f"{candidate}: no such file or folder (official StyleGAN2-ADA names: "
                            f"{', '.join(OFFICIAL_PICKLES)}; see `artlab weights list`)")


def load(path: str | os.PathLike, *, device: str | torch.device = "cpu", which: str = "G_ema") -> nn.Module:
    """The generator stored at ``path``, ready to use (eval mode, no gradients on its weights).

    ``path`` is an official network pickle (read by :func:`load_network_pickle`, never
    executed), an artlab generator file (:func:`save_generator`), a folder holding
    ``state_dict.pt`` + ``config.json``, or an official name (``"ffhq"``, ``"stylegan2-ada/ffhq"``).
    ``which`` picks the network of a pickle (``"G_ema"``, the one for generation, or ``"G"``);
    artlab files and folders hold one generator. The result is an
    ``artlab.stylegan.networks.Generator`` whose ``label`` names the file and says whether the
    weights are official, trained, random or of unknown origin; ``pretrained`` is True only for
    official or trained weights, ``weights_origin``, ``source`` and ``network`` record the rest.
    A pickle is "official" only by its contents (see :func:`_pickle_origin`: downloaded by
    artlab from NVIDIA's URL, sha256 unchanged since), never by its name; ``provenance`` holds
    its :class:`artlab.weights.Provenance` record, if any.
    """
    if which not in ("G_ema", "G"):
        raise ValueError(f"which={which!r}: only the generators 'G_ema' (for images) and 'G' can be loaded")
    source = _resolve(path)
    provenance: Provenance | None = None
    if source.is_dir():
        config, sd = _read_folder(source)
        kwargs, network, name = _config_kwargs(config, str(source)), config.get("network"), source.name + "/"
        origin = _config_origin(config)
    else:
        head = _file_head(source)  # a FIFO or device is refused here, never read
        if head.startswith(b"PK\x03\x04"):
            config, sd = _read_own_file(source)
            kwargs, network, name = _config_kwargs(config, str(source)), config.get("network"), source.name
            origin = _config_origin(config)
        else:
            records = load_network_pickle(source)
            if which not in records:
                raise PickleFormatError(f"{source} holds no {which} (it has {', '.join(records)})")
            record = records[which]
            kwargs, sd, network = record.generator_kwargs(), record.state_dict, which
            origin, name, provenance = _pickle_origin(source)
    if network not in (None, which):
        raise ValueError(f"{source} holds {network}, not {which}; pass which={network!r}")
    G = _build_generator(kwargs, sd, str(source))
    G.eval().requires_grad_(False).to(device)
    if provenance is not None and origin == "official":  # the published name it was fetched as
        stem = provenance.key.rsplit("/", 1)[-1]
    else:
        stem = Path(source.name).stem
    title = f"StyleGAN2-ADA {stem}" if origin == "official" else "StyleGAN2-ADA"
    G.label = f"{title} · {_origin_words(origin)} ({name}, {network or which})"
    G.pretrained = origin in ("official", "trained")
    G.weights_origin, G.source, G.network = origin, str(source), network or which
    G.provenance = provenance  # the artlab.weights.Provenance record of a pickle, or None
    return G

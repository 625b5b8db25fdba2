"""First pass over a network pickle: open it safely and read its opcodes without building anything.

``pickletools.genops`` walks the stream; nothing is unpickled. The scan accepts protocol
2-5 only, only the opcodes the format uses (:data:`FORMAT_OPCODES`), only the globals of
spec 1.5 (:data:`ALLOWED_GLOBALS`; ``STACK_GLOBAL`` operands resolved through a model of
the unpickler's stack), memo indices in order, tuples nested at most
:data:`MAX_TUPLE_DEPTH` deep and nothing after ``STOP``. :func:`list_globals` lists what a
file asks for without judging it. The file is opened only if it is a regular file
(:func:`open_pickle`; a FIFO or device is refused before any read) and streamed through
:class:`BoundedReader`, so no length field can make a read allocate more than the file holds.
"""

from __future__ import annotations

import io
import os
import pickletools
import stat
from dataclasses import dataclass
from pathlib import Path

import torch

from artlab.stylegan.pickle_io.errors import PickleFormatError, UnsafePickleError

__all__ = [
    "ALLOWED_GLOBALS",
    "STORAGE_TYPES",
    "INNER_GLOBALS",
    "FORMAT_OPCODES",
    "BLOB_PREFIX",
    "MAX_TUPLE_DEPTH",
    "GlobalRef",
    "ScanResult",
    "global_refusal",
    "scan_pickle",
    "list_globals",
    "BoundedReader",
    "open_pickle",
    "file_head",
]

MAX_TUPLE_DEPTH = 64  # official files nest tuples 2 deep


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
STORAGE_TYPES: dict[str, tuple[str, torch.dtype]] = {  # name -> (numpy dtype of the raw data, torch dtype)
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
INNER_GLOBALS = frozenset(("torch", name) for name in STORAGE_TYPES)

# Opcodes Python's pickler emits at protocols 2-5 for the objects of the format. Everything else
# (INST, OBJ, PERSID, EXT*, NEWOBJ_EX, out-of-band buffers, protocol-0 text forms) is refused.
FORMAT_OPCODES = frozenset(
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
BLOB_PREFIX = b"\x80\x02\x8a\x0a"  # a legacy torch.save stream starts with PROTO 2, LONG1 (magic)
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
class ScanResult:
    """What a scan found: where the pickle ends, the globals it names, where its storage blobs start."""

    end: int
    globals: list[GlobalRef]
    blob_positions: dict[int, int]  # hash(bytes) -> byte offset of its opcode


def global_refusal(module: str, name: str, where: str) -> str:
    """The message refusing a global the format does not use (with a hint for legacy TensorFlow pickles)."""
    hint = ""
    if module.startswith("dnnlib.tflib"):
        hint = (" This is a legacy TensorFlow StyleGAN pickle (a (G, D, Gs) tuple of dnnlib.tflib Networks);"
                " artlab reads only stylegan2-ada-pytorch pickles: convert it with NVIDIA's legacy.py on a machine"
                " you trust, or use the PyTorch release of the model.")
    return (f"refusing {where}: it asks for the global '{module}.{name}', which is not part of the StyleGAN2-ADA"
            f" network pickle format.{hint} Nothing in the file was executed; if you did not expect this, the file"
            " may be malicious.")


def scan_pickle(
    data: bytes | BoundedReader, start: int, *, where: str, allowed: frozenset | None, opcodes: frozenset,
    unit: str = "",
) -> ScanResult:
    """Walk the opcodes of one pickle from ``start`` without building anything.

    ``allowed=None`` lists globals without judging them (``list_globals``). The scan keeps a
    model of the unpickler's stack (from the opcode signatures in ``pickletools``): for each
    item its string value when it is a string, and its depth of tuple nesting. That resolves
    ``STACK_GLOBAL`` operands (an operand that is not a known string is refused) and bounds
    tuple nesting, because hashing a deeply nested tuple (a dict key) overflows the C stack.
    ``unit`` qualifies byte offsets in messages (" of the blob" for storage blobs).
    ``data`` is the pickle's bytes or a :class:`BoundedReader` over its file: a file is
    streamed, one argument at a time, and no read asks for more than the file still holds,
    so a length field claiming terabytes costs nothing.
    """
    stream: io.BytesIO | BoundedReader = io.BytesIO(data) if isinstance(data, bytes) else data
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
                    raise UnsafePickleError(global_refusal(module, qual, f"{where} (byte {pos}{unit})"))
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
            elif name in _BYTES_OPS and len(arg) > 64 and arg.startswith(BLOB_PREFIX):
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
    return ScanResult(end=stream.tell(), globals=found, blob_positions=blobs)


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
        return scan_pickle(source, 0, where="the data", allowed=None, opcodes=FORMAT_OPCODES).globals
    path = Path(source).expanduser()
    with open_pickle(path, max_bytes=None) as reader:
        return scan_pickle(reader, 0, where=str(path), allowed=None, opcodes=FORMAT_OPCODES).globals


class BoundedReader:
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

    def __enter__(self) -> BoundedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def open_pickle(path: Path, *, max_bytes: int | None) -> BoundedReader:
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
        return BoundedReader(fh, size)
    except BaseException:
        fh.close()
        raise


def file_head(path: Path, n: int = 4) -> bytes:
    """The first ``n`` bytes of a regular file (a FIFO or device is refused, never read)."""
    fh, _ = _open_regular(path)
    with fh:
        return fh.read(n)

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

The package has one module per idea, lowest first: :mod:`~artlab.stylegan.pickle_io.errors`
(the two errors, bounded quoting), :mod:`~artlab.stylegan.pickle_io.scan` (pass 1: open the
file safely, walk its opcodes), :mod:`~artlab.stylegan.pickle_io.unpickle` (passes 2 and 3:
restricted unpickling, network records) and :mod:`~artlab.stylegan.pickle_io.generator_files`
(artlab's own format and :func:`load`). Every public name is re-exported here.
"""

from artlab.stylegan.pickle_io.errors import PickleFormatError, UnsafePickleError
from artlab.stylegan.pickle_io.generator_files import (
    FORMAT_NAME,
    FORMAT_VERSION,
    WEIGHT_ORIGINS,
    load,
    save_generator,
)
from artlab.stylegan.pickle_io.scan import ALLOWED_GLOBALS, GlobalRef, list_globals
from artlab.stylegan.pickle_io.scan import MAX_TUPLE_DEPTH  # noqa: F401 - importable from here, as before
from artlab.stylegan.pickle_io.unpickle import (  # noqa: F401 - the limits, importable from here as before
    DEFAULT_MAX_BYTES,
    GENERATOR_ARGS,
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    MAX_MODULE_DEPTH,
    MAX_MODULES,
    MAX_PLAIN_ITEMS,
    NETWORK_KEYS,
    PERSISTENCE_VERSION,
)
from artlab.stylegan.pickle_io.unpickle import NetworkRecord, load_network_pickle

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


"""StyleGAN2-ADA compatible generator in pure PyTorch (clean-room, from the design spec).

``networks`` holds the generator (same state_dict keys as the official
``stylegan2-ada-pytorch`` networks, so official weights load with ``strict=True``), ``ops`` the
low-level operators. Loading official network pickles safely lives in ``pickle_io``.

>>> from artlab.stylegan import tiny_generator, z_from_seeds
>>> G = tiny_generator()                      # random weights, labelled as such
>>> img = G(z_from_seeds([0, 1], G.z_dim))    # raw float32, nominally [-1, 1]
"""

from artlab.stylegan.networks import (
    NOISE_MODES,
    FullyConnectedLayer,
    Generator,
    MappingNetwork,
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGBLayer,
    tiny_generator,
    z_from_seeds,
)

__all__ = [
    "NOISE_MODES",
    "FullyConnectedLayer",
    "Generator",
    "MappingNetwork",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "tiny_generator",
    "z_from_seeds",
]

# Generation, walks and projection (issue 7, second half).
from artlab.stylegan.generate import (  # noqa: E402
    CIFAR10_CLASSES,
    Rendered,
    StyleMix,
    Truncation,
    class_label,
    class_names,
    class_w_mean,
    from_images,
    generate,
    map_to_ws,
    render,
    style_mix,
    style_mix_grid,
    synthesize,
    to_images,
    truncate,
)
from artlab.stylegan.perceptual import FeatureDistance, LPIPSLoss, perceptual_loss  # noqa: E402
from artlab.stylegan.pickle_io import load, save_generator  # noqa: E402
from artlab.stylegan.project import (  # noqa: E402
    Projection,
    ProjectionResult,
    ProjectionSettings,
    ProjectionStep,
    project,
)
from artlab.stylegan.walks import (  # noqa: E402
    WalkFrame,
    class_mix_walk,
    collect,
    frame_grid,
    lerp,
    save_walk,
    slerp,
    walk_to_class,
    walk_w,
    walk_w_to_class,
    walk_z,
)

__all__ += [
    "CIFAR10_CLASSES",
    "Rendered",
    "StyleMix",
    "Truncation",
    "class_label",
    "class_names",
    "class_w_mean",
    "from_images",
    "generate",
    "map_to_ws",
    "render",
    "style_mix",
    "style_mix_grid",
    "synthesize",
    "to_images",
    "truncate",
    "FeatureDistance",
    "LPIPSLoss",
    "perceptual_loss",
    "load",
    "save_generator",
    "Projection",
    "ProjectionResult",
    "ProjectionSettings",
    "ProjectionStep",
    "project",
    "WalkFrame",
    "class_mix_walk",
    "collect",
    "frame_grid",
    "lerp",
    "save_walk",
    "slerp",
    "walk_to_class",  # deprecated alias: collect(walk_w_to_class(...))
    "walk_w",
    "walk_w_to_class",
    "walk_z",
]

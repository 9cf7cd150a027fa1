"""vizlib: the reference library of the course *Seeing Inside ConvNets*.

Where each lecture's code lives (one module per technique; the course's arc from top to bottom):

inspect
    01 first-layer filters ............ :mod:`vizlib.filters`
    02 intermediate activations ....... :mod:`vizlib.activations`
    03 last layer, nearest neighbours . :mod:`vizlib.neighbors`
    04 maximally activating patches ... :mod:`vizlib.patches`, :mod:`vizlib.receptive`
attribute
    05-07 occlusion, saliency, guided backprop, CAM / Grad-CAM ... :mod:`vizlib.attribution`
    15 sanity checks for heatmaps ..... :mod:`vizlib.sanity`
synthesize
    08-11 class / filter visualisation, fooling images, DeepDream, feature inversion
          ........................... :mod:`vizlib.ascent`, on the loop of :mod:`vizlib.render`
          (objectives, param, transforms, regularizers, loop)
style
    12 texture synthesis .............. :mod:`vizlib.texture` (Efros-Leung), :mod:`vizlib.style`
    13 neural style transfer .......... :mod:`vizlib.style` (the Gatys loop),
          :mod:`vizlib.style_losses` (Gram matrices, losses, targets), :mod:`vizlib.color`
    14 fast style transfer ............ :mod:`vizlib.fast_style`
show
    :mod:`vizlib.plot` (figures), :mod:`vizlib.widgets` (explorers)

Shared by all: :mod:`vizlib.models` (the networks and their door), :mod:`vizlib.policy` (pixels,
devices, modes, dtypes: the one policy), :mod:`vizlib.precision` (float32 / bfloat16),
:mod:`vizlib.layers` (layers by name), :mod:`vizlib.hooks` (every hook, inside context
managers), :mod:`vizlib.validate` (shape and argument checks), :mod:`vizlib.images` (loading and
saving), :mod:`vizlib.samples` (bundled photos and paintings), :mod:`vizlib.metrics` (SSIM,
texture statistics), :mod:`vizlib.blur`, :mod:`vizlib.progress`, :mod:`vizlib.config`
(quick mode, devices, :class:`~vizlib.config.VizlibWarning`). The course's own data and network:
:mod:`vizlib.shapes`, :mod:`vizlib.offline`, :mod:`vizlib.efficientnet`. Course tooling (book,
grading, Colab): :mod:`vizlib.course`; the command line: :mod:`vizlib.cli`.
"""
__version__ = "0.1.0"

"""What the last layer knows: nearest neighbours in feature space versus pixel space.

Lecture 03 compares two ways of asking "which images look like this one?":

- in *pixel space* (:func:`pixel_features`), where an object moved by a few pixels is far
  from itself and a busy background dominates every distance;
- in *feature space* (:func:`extract_features`), the network's penultimate representation,
  where images of the same class gather whatever their position, colour or background.

Then it draws the feature space: :func:`embed_2d` (PCA or t-SNE) squeezes the features to
2-D, :func:`grid_assignment` snaps those points onto a grid (one image per cell) and
:func:`grid_image` tiles the images into one picture.

    feats = extract_features(model, images)                       # (N, D)
    idx, dist = nearest_neighbors(feats[:5], feats, k=8, exclude=torch.arange(5))
    neighbor_class_agreement(idx, labels[:5], labels)             # 0.0 … 1.0

Features can be cached on disk (``cache_dir=default_cache_dir()``) so re-running a notebook
cell is instant; the cache is keyed by the *content* of the weights and the images, stored
as safetensors (never pickle), and a damaged file is simply recomputed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler
from torch import nn

from . import config
from .hooks import capture_activations, capture_inputs
from .images import batch_count, iter_batches
from .policy import model_device, require_eval
from .progress import progress_bar
from .validate import check_positive_int

__all__ = ["default_cache_dir", "penultimate_layer", "extract_features", "pixel_features",
           "nearest_neighbors", "neighbor_class_agreement", "embed_2d", "grid_assignment",
           "grid_image"]

_PENULTIMATE = "<penultimate>"   # the cache key's layer name for ``layer=None``


# ----------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """Where feature caches live: ``$VIZLIB_CACHE`` or ``~/.cache/vizlib/features``."""
    env = os.environ.get("VIZLIB_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vizlib" / "features"


def penultimate_layer(model: nn.Module) -> nn.Module:
    """The model's last ``nn.Linear`` (``fc`` / ``fc8``); its *input* is the penultimate code.

    Raises ``ValueError`` when the model has no ``nn.Linear`` (e.g. SqueezeNet, whose
    classifier is a convolution): pass ``layer=`` by name instead.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        name = getattr(model, "name", type(model).__name__)
        raise ValueError(f"{name} has no nn.Linear layer; pass layer= by name "
                         f"(e.g. 'avgpool') to choose the representation")
    return linears[-1]


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _layer_key(model: nn.Module, layer) -> str:
    if layer is None:
        return _PENULTIMATE
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return "module:" + name
        return "module:" + repr(layer)
    return str(layer)


def _cache_key(model: nn.Module, layer, batches: list[torch.Tensor]) -> str:
    """sha256 of the weights (names, dtypes, shapes, bytes), the layer and the images."""
    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    for name, t in model.state_dict().items():
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(_tensor_bytes(t))
    h.update(("layer=" + _layer_key(model, layer)).encode())
    for b in batches:
        h.update(f"images|{b.dtype}|{tuple(b.shape)}".encode())
        h.update(_tensor_bytes(b))
    return h.hexdigest()


def _load_cached(path: Path) -> torch.Tensor | None:
    if not path.exists():
        return None
    try:
        feats = load_file(str(path))["features"]
        if feats.dim() != 2:
            raise ValueError(f"features have shape {tuple(feats.shape)}")
        return feats.float()
    except Exception as e:  # truncated, garbage, or not a safetensors file at all
        config.warn(f"ignoring unreadable feature cache {path} ({type(e).__name__}); recomputing")
        return None


def _save_cached(path: Path, feats: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        save_file({"features": feats.contiguous()}, str(tmp))
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    finally:
        if tmp.exists():
            tmp.unlink()


def extract_features(model: nn.Module, images, layer=None, batch_size: int = 64,
                     progress: bool | None = None, cache_dir=None) -> torch.Tensor:
    """The representation a layer gives each image, one flat row per image.

    Args:
        model: a classifier taking ``(B, 3, H, W)`` float in [0, 1] (a
            :class:`~vizlib.models.CourseModel`); it runs on its own device, in eval mode,
            under ``torch.no_grad()``, and is left exactly as it was.
        images: ``(N, 3, H, W)`` float in [0, 1], or an iterable of such batches (tensors,
            ``(images, labels)`` tuples or ``{"images": …}`` dicts).
        layer: ``None`` for the penultimate representation — the *input* of the model's last
            ``nn.Linear`` (``fc`` / ``fc8``); or a layer name (``"relu4"``, ``"avgpool"``) or
            module, whose *output* is flattened.
        batch_size: images per forward pass when ``images`` is one tensor (does not change
            the result).
        progress: a progress bar over the batches (``None``: when there are at least
            :data:`~vizlib.progress.PROGRESS_PASSES`, counted as ``ceil(N / batch_size)`` for a
            tensor or ``len(images)`` for a stream; a stream without a length shows none). A
            cached result shows none.
        cache_dir: a folder for a disk cache keyed by the content of the weights, the layer
            and the images (e.g. :func:`default_cache_dir`); ``None`` computes every time.

    Returns:
        ``(N, D)`` float32 on the CPU.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    batches: Iterable[torch.Tensor] = iter_batches(images, batch_size)
    total = batch_count(images, batch_size)

    path = None
    if cache_dir is not None:
        batches = list(batches)  # hashed first, then run
        total = len(batches)
        path = Path(cache_dir).expanduser() / f"{_cache_key(model, layer, batches)}.safetensors"
        cached = _load_cached(path)
        if cached is not None:
            return cached

    require_eval(model, "extract_features")
    device = model_device(model)
    if layer is None:
        last = penultimate_layer(model)
        capture, key = capture_inputs(model, [last]), last
    else:
        capture, key = capture_activations(model, layer), layer

    rows = []
    with torch.no_grad(), capture as store, \
            progress_bar(total, "extract_features", progress, unit="batch") as bar:
        for batch in batches:
            model(batch.to(device=device, dtype=torch.float32))
            rows.append(store[key].flatten(1).to("cpu", torch.float32))
            bar.update(1)
    if not rows:
        raise ValueError("no images given")
    feats = torch.cat(rows)
    if path is not None:
        _save_cached(path, feats)
    return feats


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """The pixel-space baseline: ``(N, 3, H, W)`` -> ``(N, 3*H*W)`` float32 (a copy)."""
    if images.dim() != 4:
        raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
    return images.detach().reshape(len(images), -1).to(torch.float32, copy=True)


# ----------------------------------------------------------------------------------------
# Neighbours
# ----------------------------------------------------------------------------------------

def nearest_neighbors(queries: torch.Tensor, database: torch.Tensor, k: int = 5,
                      metric: str = "euclidean", exclude: torch.Tensor | None = None,
                      chunk_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``k`` nearest database rows for every query, closest first.

    Args:
        queries: ``(Q, D)``; database: ``(N, D)`` (same device).
        metric: ``"euclidean"`` (L2 distance) or ``"cosine"`` (``1 - cos``, in [0, 2]).
        exclude: ``(Q,)`` database indices never returned for the matching query (e.g. the
            query itself when querying within the database); negative entries exclude nothing.
        chunk_size: queries handled at once (bounds memory to ``chunk_size × N`` distances).

    Returns:
        ``indices`` ``(Q, k)`` int64 and ``distances`` ``(Q, k)`` (float32 at least).
    """
    if queries.dim() != 2 or database.dim() != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError(f"queries (Q, D) and database (N, D) must share D, got "
                         f"{tuple(queries.shape)} and {tuple(database.shape)}")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    n = database.shape[0]
    available = n - (1 if exclude is not None else 0)
    if not 1 <= k <= available:
        raise ValueError(f"k must be in 1..{available}, got {k}")
    dtype = torch.promote_types(torch.promote_types(queries.dtype, database.dtype), torch.float32)
    q_all = queries.detach().to(dtype)
    db = database.detach().to(device=q_all.device, dtype=dtype)
    if exclude is not None:
        exclude = torch.as_tensor(exclude, dtype=torch.long, device=q_all.device).reshape(-1)
        if exclude.shape[0] != q_all.shape[0]:
            raise ValueError(f"exclude must have one index per query ({q_all.shape[0]}), "
                             f"got {exclude.shape[0]}")
    if metric == "cosine":
        q_all = torch.nn.functional.normalize(q_all, dim=1)
        db = torch.nn.functional.normalize(db, dim=1)

    indices, distances = [], []
    for start in range(0, q_all.shape[0], chunk_size):
        q = q_all[start:start + chunk_size]
        if metric == "euclidean":
            # the direct form (no |a|²+|b|²-2ab expansion): exact, no cancellation
            d = torch.cdist(q.unsqueeze(0), db.unsqueeze(0),
                            compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
        else:
            d = (1.0 - q @ db.T).clamp_(0.0, 2.0)
        if exclude is not None:
            ex = exclude[start:start + chunk_size]
            rows = torch.nonzero(ex >= 0).squeeze(1)
            d[rows, ex[rows]] = float("inf")
        top = d.topk(k, dim=1, largest=False, sorted=True)
        indices.append(top.indices)
        distances.append(top.values)
    return torch.cat(indices), torch.cat(distances)


def neighbor_class_agreement(neighbor_indices: torch.Tensor, query_labels: torch.Tensor,
                             database_labels: torch.Tensor) -> float:
    """Top-k class agreement: the fraction of (query, neighbour) pairs of the same class.

    ``neighbor_indices``: ``(Q, k)`` into the database; ``query_labels``: ``(Q,)``;
    ``database_labels``: ``(N,)``. Chance level is about ``1 / num_classes``.
    """
    idx = torch.as_tensor(neighbor_indices).long()
    ql = torch.as_tensor(query_labels).to(idx.device)
    dl = torch.as_tensor(database_labels).to(idx.device)
    if idx.dim() != 2 or ql.shape != (idx.shape[0],):
        raise ValueError(f"neighbor_indices (Q, k) and query_labels (Q,) expected, got "
                         f"{tuple(idx.shape)} and {tuple(ql.shape)}")
    return float((dl[idx] == ql[:, None]).float().mean())


# ----------------------------------------------------------------------------------------
# Drawing the feature space
# ----------------------------------------------------------------------------------------

def embed_2d(features: torch.Tensor, method: str = "pca", seed: int = 0,
             perplexity: float = 30) -> torch.Tensor:
    """Squeeze ``(N, D)`` features to ``(N, 2)`` points with PCA or t-SNE (scikit-learn).

    t-SNE first standardises the features and, when ``D > 50``, reduces them to 50 PCA
    dimensions (faster, and the usual recipe); ``perplexity`` is capped for small ``N``.
    The same ``seed`` gives the same points. Returns float32 on the CPU.
    """

    x = torch.as_tensor(features).detach().cpu().to(torch.float64).numpy()
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"features must be (N, D) with N >= 3, got shape {x.shape}")
    if method == "pca":
        pts = PCA(n_components=min(2, x.shape[1]), svd_solver="full").fit_transform(x)
        if pts.shape[1] < 2:
            pts = np.concatenate([pts, np.zeros((len(pts), 2 - pts.shape[1]))], axis=1)
    elif method == "tsne":

        x = StandardScaler().fit_transform(x)
        if x.shape[1] > 50:
            x = PCA(n_components=min(50, x.shape[0]), svd_solver="full").fit_transform(x)
        perp = float(min(perplexity, (x.shape[0] - 1) / 3))
        pts = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perp
                   ).fit_transform(x)
    else:
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    return torch.from_numpy(np.ascontiguousarray(pts)).to(torch.float32)


def grid_assignment(points: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Snap 2-D points onto a ``rows × cols`` grid, one point per cell, keeping the layout.

    ``points[:, 0]`` runs along the columns (x, left to right), ``points[:, 1]`` along the
    rows (y, top to bottom). The points are scaled to the grid's extent and assigned to
    cell centres by an optimal linear assignment on squared distances. Points already on a
    grid land in their own cells.

    Returns ``(N,)`` int64 cell indices ``row * cols + col``, all distinct.
    """

    p = torch.as_tensor(points).detach().cpu().to(torch.float64)
    if p.dim() != 2 or p.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got shape {tuple(p.shape)}")
    if p.shape[0] > rows * cols:
        raise ValueError(f"{p.shape[0]} points do not fit on a {rows}x{cols} grid")
    lo, hi = p.min(0).values, p.max(0).values
    span = hi - lo
    unit = torch.where(span > 0, (p - lo) / span.clamp_min(1e-300), torch.full_like(p, 0.5))
    scaled = unit * torch.tensor([cols - 1, rows - 1], dtype=torch.float64)
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64),
                          torch.arange(cols, dtype=torch.float64), indexing="ij")
    centres = torch.stack([c.reshape(-1), r.reshape(-1)], dim=1)  # (rows*cols, 2) as (x, y)
    cost = ((scaled[:, None, :] - centres[None, :, :]) ** 2).sum(-1).numpy()
    point_ids, cell_ids = linear_sum_assignment(cost)
    cells = np.empty(p.shape[0], dtype=np.int64)
    cells[point_ids] = cell_ids
    return torch.from_numpy(cells)


def grid_image(images: torch.Tensor, cells: torch.Tensor, rows: int, cols: int,
               pad: int = 1) -> torch.Tensor:
    """Tile ``(N, 3, h, w)`` images into the cells of a ``rows × cols`` grid.

    ``cells``: ``(N,)`` distinct indices ``row * cols + col`` (see :func:`grid_assignment`).
    Empty cells and the ``pad``-pixel gaps are white. Returns ``(3, H, W)`` with
    ``H = rows * (h + pad) + pad`` and ``W = cols * (w + pad) + pad``.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, h, w), got shape {tuple(images.shape)}")
    cells = torch.as_tensor(cells).long().reshape(-1).cpu()
    if cells.shape[0] != images.shape[0]:
        raise ValueError(f"one cell per image expected: {images.shape[0]} images, "
                         f"{cells.shape[0]} cells")
    if cells.numel() and (cells.min() < 0 or cells.max() >= rows * cols):
        raise ValueError(f"cells must lie in 0..{rows * cols - 1}")
    if cells.unique().numel() != cells.numel():
        raise ValueError("two images share a cell")
    n, ch, h, w = images.shape
    out = torch.ones(ch, rows * (h + pad) + pad, cols * (w + pad) + pad,
                     dtype=images.dtype, device=images.device)
    for img, cell in zip(images.detach(), cells.tolist()):
        r, c = divmod(cell, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[:, y:y + h, x:x + w] = img
    return out

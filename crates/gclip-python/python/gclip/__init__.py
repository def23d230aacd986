"""gclip: CLIP and GCL multimodal embeddings, zero-shot classification and search.

A Python skin over the gclip Rust library: the same checkpoints, tokenizer, image
preprocessing, CPU engine and search index as the ``gclip`` command, with numpy in and out.
Work runs with the GIL released.

>>> import gclip
>>> model = gclip.load()                       # the embedded default model
>>> texts = model.embed_texts(["red sneakers", "a blue mug"])   # float32 [2, dim], unit rows
>>> probs = model.zero_shot(["shoe.png"], ["a shoe", "a mug"])  # [1, 2]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _gclip
from ._errors import (
    GclipError,
    ImageError,
    InvalidInputError,
    ModelError,
    SearchIndexError,
    TrainError,
)
from ._images import is_single_image, split_items, to_native

__version__: str = _gclip.__version__

PathLike = Union[str, "os.PathLike[str]"]
ImageLike = Any  # str | os.PathLike | bytes | PIL.Image.Image | np.ndarray (uint8, HxWx3)


def load(
    path: Optional[PathLike] = None,
    precision: str = "fp32",
    threads: Optional[int] = None,
    *,
    arch: Optional[str] = None,
    reference: bool = False,
    image_pipeline: Optional[str] = None,
    batch_size: Optional[int] = None,
) -> "Model":
    """Loads a model.

    ``path``: a Hugging Face ``CLIPModel`` directory, an open_clip directory, or a bare
    ``.safetensors`` / ``.bin`` / ``.pt`` weight file (then with ``arch``, e.g. ``"ViT-B-32"``).
    Without it, ``$GCLIP_MODEL`` if set, else the small default model embedded in gclip.

    ``precision``: ``"fp32"`` or ``"int8"`` (dynamic quantisation of the linear layers; an
    error on CPUs without AVX512-VNNI or AVX2). ``threads``: engine worker threads (default:
    all cores; the first model loaded in a process also sizes the image-decoding pool).
    ``reference=True`` runs the candle reference path instead of gclip's CPU kernels;
    ``image_pipeline`` (``"open_clip"`` or ``"transformers"``) overrides whose image
    preprocessing runs; ``batch_size`` is the number of items per forward pass (16).
    """
    native = _gclip.load(
        None if path is None else os.fspath(path),
        precision,
        threads,
        arch,
        reference,
        image_pipeline,
        batch_size,
    )
    return Model(native)


def _float_matrix(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{what}: expected embeddings of shape (n, dim), got {a.shape}")
    return np.ascontiguousarray(a)


def _is_embeddings(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim in (1, 2)


class Model:
    """A loaded CLIP model with its tokenizer and image preprocessing (see :func:`load`).

    Images are given as file paths (``str`` or ``os.PathLike``), encoded ``bytes``,
    ``PIL.Image`` objects, or ``uint8`` arrays of shape (height, width, 3); a single image or
    a sequence of them. Files and bytes are decoded in their own colour mode and preprocessed
    with the checkpoint's ecosystem's pipeline, exactly as ``gclip embed`` does.
    """

    __slots__ = ("_native",)

    def __init__(self, native: "_gclip.Model") -> None:
        self._native = native

    def __repr__(self) -> str:
        return (
            f"gclip.Model(source={self.source!r}, dim={self.dim}, image_size={self.image_size}, "
            f"precision={self.precision!r}, backend={self.backend!r})"
        )

    # -- embedding -------------------------------------------------------------------------

    def embed_texts(self, texts: Union[str, Sequence[str]], normalize: bool = True) -> np.ndarray:
        """Text embeddings, float32 ``[n, dim]`` (unit rows when ``normalize``)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i}: expected str, got {type(t).__name__}")
        return self._native.embed_texts(texts, normalize)

    def embed_images(self, images: Union[ImageLike, Sequence[ImageLike]], normalize: bool = True) -> np.ndarray:
        """Image embeddings, float32 ``[n, dim]``. The first unreadable image raises
        :class:`ImageError` naming it."""
        items, labels = to_native(images)
        return self._native.embed_images(items, normalize, labels)

    def embed(self, items: Sequence[Union[str, ImageLike]], normalize: bool = True) -> np.ndarray:
        """Embeddings of a mixed sequence in order. As in ``gclip similarity``, a ``str`` is a
        text unless it names an existing file with an image extension; ``pathlib.Path``,
        bytes, PIL images and arrays are images."""
        items = list(items)
        ti, texts, ii, imgs = split_items(items)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        if texts:
            out[ti] = self.embed_texts(texts, normalize)
        if imgs:
            out[ii] = self.embed_images(imgs, normalize)
        return out

    def embed_pixels(self, pixels: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Embeddings of preprocessed pixels ``[n, 3, S, S]`` (what :meth:`preprocess` returns)."""
        a = np.ascontiguousarray(np.asarray(pixels, dtype=np.float32))
        if a.ndim == 3:
            a = a[None]
        return self._native.embed_pixels(a, normalize)

    def embed_tokens(self, ids: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Embeddings of token id rows ``[n, L]`` (what :meth:`tokenize` returns)."""
        a = np.ascontiguousarray(np.asarray(ids, dtype=np.int64))
        if a.ndim == 1:
            a = a[None]
        return self._native.embed_tokens(a, normalize)

    # -- front-ends ------------------------------------------------------------------------

    def tokenize(self, texts: Union[str, Sequence[str]]) -> np.ndarray:
        """Token ids, int64 ``[n, context_length]``: start token, BPE ids, end token, zero
        padding (open_clip's ``tokenize``)."""
        if isinstance(texts, str):
            texts = [texts]
        return self._native.tokenize(list(texts))

    def preprocess(self, image: Union[ImageLike, Sequence[ImageLike]]) -> np.ndarray:
        """The model's input pixels, float32: ``[3, S, S]`` for one image, ``[n, 3, S, S]``
        for a sequence (open_clip's / transformers' preprocessing, normalised)."""
        items, labels = to_native(image)
        out = self._native.preprocess(items, labels)
        return out[0] if is_single_image(image) else out

    # -- comparing -------------------------------------------------------------------------

    def _side(self, x: Any, what: str) -> np.ndarray:
        if _is_embeddings(x):
            return _float_matrix(x, what)
        if isinstance(x, str):
            return self.embed([x])
        if is_single_image(x):
            return self.embed_images([x])
        return self.embed(list(x))

    def similarity(
        self,
        a: Any,
        b: Any,
        *,
        softmax: bool = False,
        scale: Optional[float] = None,
    ) -> np.ndarray:
        """Cosine similarity matrix ``[len(a), len(b)]``.

        Each side is float embeddings (``[n, dim]`` or ``[dim]``), or texts and images to
        embed (see :meth:`embed`: strings naming existing image files, ``pathlib.Path``,
        bytes, PIL images and arrays are images, other strings texts). With ``softmax=True``, each row is a softmax over ``b`` at
        ``scale`` (default: the model's :attr:`logit_scale`), as ``gclip similarity --softmax``.
        """
        ea, eb = self._side(a, "a"), self._side(b, "b")
        cos = _gclip.cosine_matrix(ea, eb)
        if not softmax:
            return cos
        s = self.logit_scale if scale is None else float(scale)
        if not np.isfinite(s) or s <= 0:
            raise InvalidInputError("scale must be a positive number")
        return _gclip.softmax_rows(cos, s)

    def zero_shot(
        self,
        images: Any,
        labels: Sequence[str],
        templates: Optional[Union[str, Sequence[str]]] = None,
        scale: Optional[float] = None,
    ) -> np.ndarray:
        """Zero-shot probabilities ``[n_images, n_labels]``, labels in the given order.

        ``images``: images (see :class:`Model`) or their embeddings (float ``[n, dim]``).
        ``templates``: prompt templates with ``{}`` for the label (each label's embedding is
        the renormalised mean over its prompts, OpenAI's ensemble), ``"imagenet"`` for
        OpenAI's 80 templates, or ``None`` for the bare labels. ``scale``: the softmax scale
        (default: the model's :attr:`logit_scale`; the Oxford-shoe example uses 10).
        """
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of strings, not one string")
        labels = list(labels)
        if templates is None:
            tpl: List[str] = []
        elif isinstance(templates, str):
            tpl = _gclip.imagenet_templates() if templates == "imagenet" else [templates]
        else:
            tpl = list(templates)
        if scale is not None and (not np.isfinite(scale) or scale <= 0):
            raise InvalidInputError("scale must be a positive number")
        emb = _float_matrix(images, "images") if _is_embeddings(images) else self.embed_images(images)
        return self._native.zero_shot(emb, labels, tpl, None if scale is None else float(scale))

    # -- facts -----------------------------------------------------------------------------

    @property
    def logit_scale(self) -> float:
        """``exp(logit_scale)``: the factor applied to cosines before a softmax."""
        return self._native.logit_scale

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._native.dim

    @property
    def image_size(self) -> int:
        return self._native.image_size

    @property
    def context_length(self) -> int:
        return self._native.context_length

    @property
    def vocab_size(self) -> int:
        return self._native.vocab_size

    @property
    def batch_size(self) -> int:
        return self._native.batch_size

    @property
    def source(self) -> str:
        """Where the model was loaded from."""
        return self._native.source

    @property
    def model_id(self) -> str:
        """The identity an index is pinned to (architecture, pipeline, hash of the weights)."""
        return self._native.model_id

    @property
    def ecosystem(self) -> str:
        """``"open_clip"`` or ``"transformers"``: whose tokenizer and preprocessing it uses."""
        return self._native.ecosystem

    @property
    def image_pipeline(self) -> str:
        return self._native.image_pipeline

    @property
    def precision(self) -> str:
        return self._native.precision

    @property
    def backend(self) -> str:
        """``"engine"`` (gclip's CPU kernels) or ``"reference"`` (candle)."""
        return self._native.backend


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _dumps(x: Any) -> str:
    return json.dumps(x, default=_json_default)


def _as_model(model: Any) -> Optional["_gclip.Model"]:
    if model is None:
        return None
    if isinstance(model, Model):
        return model._native
    if isinstance(model, (str, os.PathLike)):
        return load(model)._native
    raise TypeError(f"model must be a gclip.Model or a path, got {type(model).__name__}")


class Index:
    """A durable search index over gclip's search library (Marqo's data model).

    ``path`` is a gclip data directory, the one ``gclip index --data-dir`` uses; it can hold
    several indexes, each with a ``name`` (default ``"default"``). Documents are dicts with an
    optional ``_id`` and fields; ``tensor_fields`` are embedded (texts, or images by path or
    ``data:image/...;base64`` when the index was created with
    ``settings={"treatUrlsAndPointersAsImages": True}``).
    """

    __slots__ = ("_native",)

    def __init__(self, native: "_gclip.Index") -> None:
        self._native = native

    @classmethod
    def create(
        cls,
        path: PathLike,
        model: Union["Model", PathLike, None] = None,
        *,
        name: str = "default",
        settings: Optional[Mapping[str, Any]] = None,
    ) -> "Index":
        """Creates index ``name`` in data directory ``path``, pinned to ``model`` (a
        :class:`Model`, a checkpoint path, or ``None`` for :func:`load`'s default).
        ``settings``: Marqo's index settings (camelCase keys, e.g.
        ``{"treatUrlsAndPointersAsImages": True, "annParameters": {...}}``)."""
        native_model = _as_model(model) or load()._native
        native = _gclip.Index.create(
            os.fspath(path), name, native_model, None if settings is None else _dumps(dict(settings))
        )
        return cls(native)

    @classmethod
    def open(
        cls,
        path: PathLike,
        model: Union["Model", PathLike, None] = None,
        *,
        name: Optional[str] = None,
    ) -> "Index":
        """Opens an index of data directory ``path`` (``name`` may be left out when the
        directory holds one index). Text and image queries need the index's model: give it as
        ``model``; without it, ``$GCLIP_MODEL`` or the default model is attached when it is the
        one the index was created with."""
        p = os.fspath(path)
        if name is None:
            names = _gclip.list_indexes(p)
            if len(names) != 1:
                found = ", ".join(names) if names else "none"
                raise SearchIndexError(
                    f"{p} holds {len(names)} indexes ({found}): give name=..."
                )
            name = names[0]
        return cls(_gclip.Index.open(p, name, _as_model(model)))

    @staticmethod
    def list(path: PathLike) -> List[str]:
        """Names of the indexes in data directory ``path``."""
        return _gclip.list_indexes(os.fspath(path))

    @staticmethod
    def drop(path: PathLike, name: str = "default") -> None:
        """Deletes index ``name`` of data directory ``path`` and its files."""
        _gclip.drop_index(os.fspath(path), name)

    def attach(self, model: Union["Model", PathLike]) -> None:
        """Attaches the index's model (it must be the one the index was created with)."""
        self._native.attach(_as_model(model))

    def add(
        self,
        docs: Union[Mapping[str, Any], Iterable[Mapping[str, Any]]],
        tensor_fields: Optional[Sequence[str]] = None,
        mappings: Optional[Mapping[str, Any]] = None,
        *,
        batch_size: int = 64,
        progress: bool = False,
    ) -> Dict[str, Any]:
        """Adds (or replaces, by ``_id``) documents; returns Marqo's batch reply
        ``{"errors": bool, "items": [{"_id", "status", ...}], "processingTimeMs"}``.

        ``tensor_fields``: the fields to embed; ``None`` embeds every string field and every
        field named in ``mappings``. ``mappings``: Marqo's mappings, e.g.
        ``{"doc": {"type": "multimodal_combination", "weights": {"image": 0.9, "title": 0.1}}}``
        or ``{"vec": {"type": "custom_vector"}}`` (the document then gives
        ``{"vec": {"vector": [...], "content": "..."}}``; numpy vectors are accepted).
        """
        if isinstance(docs, Mapping):
            docs = [docs]
        docs = [dict(d) for d in docs]
        if tensor_fields is None:
            fields: Dict[str, None] = {}
            for d in docs:
                for k, v in d.items():
                    if isinstance(v, str) and not k.startswith("_"):
                        fields.setdefault(k)
            for k in mappings or {}:
                fields.setdefault(k)
            tensor_fields = list(fields)
        reply = self._native.add(
            _dumps(docs),
            list(tensor_fields),
            None if mappings is None else _dumps(dict(mappings)),
            batch_size,
            progress,
        )
        return json.loads(reply)

    def update(self, docs: Union[Mapping[str, Any], Iterable[Mapping[str, Any]]]) -> Dict[str, Any]:
        """Partial updates: dicts with ``_id`` and the fields to change."""
        if isinstance(docs, Mapping):
            docs = [docs]
        return json.loads(self._native.update(_dumps([dict(d) for d in docs])))

    def search(
        self,
        q: Any = None,
        limit: int = 10,
        filter: Optional[str] = None,
        method: str = "tensor",
        *,
        offset: int = 0,
        attributes: Optional[Sequence[str]] = None,
        searchable_attributes: Optional[Sequence[str]] = None,
        show_highlights: bool = True,
        ef_search: Optional[int] = None,
        approximate: Optional[bool] = None,
        score_modifiers: Optional[Mapping[str, Any]] = None,
        hybrid_parameters: Optional[Mapping[str, Any]] = None,
        full_response: bool = False,
    ) -> Any:
        """Searches; returns the hits, each a dict with ``_id``, ``_score``, the document's
        fields and ``_highlights`` (the full Marqo reply with ``full_response=True``).

        ``q``: a text (or an image path when the index treats pointers as images), a dict of
        ``{query: weight}`` (negative weights push away), or a vector (numpy array or list of
        floats). ``method``: ``"tensor"``, ``"lexical"`` (BM25) or ``"hybrid"`` (RRF).
        ``filter``: Marqo's filter language, e.g. ``"colour:red AND price:[0 TO 50]"``.
        """
        m = method.lower()
        if m not in ("tensor", "lexical", "hybrid"):
            raise InvalidInputError(f'method must be "tensor", "lexical" or "hybrid", got {method!r}')
        body: Dict[str, Any] = {
            "searchMethod": m.upper(),
            "limit": limit,
            "offset": offset,
            "showHighlights": show_highlights,
        }
        if q is not None:
            if isinstance(q, (np.ndarray, list, tuple)):
                body["q"] = {"customVector": {"vector": np.asarray(q, dtype=np.float32).ravel().tolist()}}
            elif isinstance(q, os.PathLike):
                body["q"] = os.fspath(q)
            else:
                body["q"] = q
        if filter is not None:
            body["filter"] = filter
        if attributes is not None:
            body["attributesToRetrieve"] = list(attributes)
        if searchable_attributes is not None:
            body["searchableAttributes"] = list(searchable_attributes)
        if ef_search is not None:
            body["efSearch"] = ef_search
        if approximate is not None:
            body["approximate"] = approximate
        if score_modifiers is not None:
            body["scoreModifiers"] = dict(score_modifiers)
        if hybrid_parameters is not None:
            body["hybridParameters"] = dict(hybrid_parameters)
        reply = json.loads(self._native.search(_dumps(body)))
        return reply if full_response else reply["hits"]

    def get(self, ids: Union[str, Sequence[str]], *, facets: bool = False) -> Any:
        """One document by id (raises :class:`SearchIndexError`, code ``document_not_found``,
        when missing), or for a list of ids a list of documents each with ``_found``.
        ``facets=True`` adds each chunk and its vector (``_tensor_facets``)."""
        if isinstance(ids, str):
            return json.loads(self._native.get(ids, facets))
        return json.loads(self._native.get_many(list(ids), facets))

    def delete(self, ids: Union[str, Sequence[str], None] = None, *, filter: Optional[str] = None) -> Any:
        """Deletes documents by id (returns Marqo's batch reply) or by ``filter`` (returns the
        number deleted)."""
        if filter is not None:
            if ids is not None:
                raise InvalidInputError("give ids or filter, not both")
            return self._native.delete_by_filter(filter)
        if ids is None:
            raise InvalidInputError("give ids or filter")
        if isinstance(ids, str):
            ids = [ids]
        return json.loads(self._native.delete(list(ids)))

    def stats(self) -> Dict[str, Any]:
        """``numberOfDocuments``, ``numberOfVectors``, ``graphNodes``, ``bytesOnDisk``,
        ``bytesInMemory``."""
        return json.loads(self._native.stats())

    def ids(self) -> List[str]:
        """Ids of every document."""
        return self._native.document_ids()

    def checkpoint(self) -> None:
        """Writes the vector graph to disk (``add`` and ``update`` already do)."""
        self._native.checkpoint()

    def close(self) -> None:
        """Lets go of the index. Its database closes (and another process, such as the
        ``gclip`` command, can open it) once no handle in this process uses its data
        directory; dropping every handle does the same."""
        self._native.close()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self.stats()["numberOfDocuments"])

    def __repr__(self) -> str:
        return f"gclip.Index(name={self.name!r}, path={str(self.path)!r}, dim={self.dim})"

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def path(self) -> Path:
        """The data directory."""
        return Path(self._native.data_dir)

    @property
    def model_id(self) -> str:
        return self._native.model_id

    @property
    def dim(self) -> int:
        return self._native.dim

    @property
    def settings(self) -> Dict[str, Any]:
        """The index settings (Marqo's camelCase)."""
        return json.loads(self._native.settings)


class TrainResult(str):
    """The output directory of a training run (a ``str``), with the run's ``summary``."""

    summary: Dict[str, Any]

    def __new__(cls, path: str, summary: Dict[str, Any]) -> "TrainResult":
        obj = super().__new__(cls, path)
        obj.summary = summary
        return obj


def train(
    config: Union[Mapping[str, Any], PathLike],
    *,
    progress: bool = True,
    image_pipeline: Optional[str] = None,
    **overrides: Any,
) -> TrainResult:
    """Trains a CLIP or GCL model, as ``gclip train`` does; returns the output directory
    (with the run's ``summary`` as an attribute).

    ``config``: a dict of the training config (Marqo-style keys: ``data``, ``leftKeys``,
    ``rightKeys``, ``rightWeights``, ``weightKey``, ``loss``, ``model`` or ``arch``,
    ``epochs``, ``batchSize``, ``lr``, ``output``, ...; relative paths against the working
    directory) or the path of a JSON / TOML config file (relative paths against the file).
    ``overrides`` are merged into a dict config. ``progress`` draws a bar on stderr when it
    is a terminal.
    """
    if isinstance(config, Mapping):
        cfg = dict(config)
        cfg.update(overrides)
        out, summary = _gclip.train(None, _dumps(cfg), progress, image_pipeline)
    else:
        if overrides:
            raise InvalidInputError(
                "overrides apply to a dict config; load the file into a dict to override keys"
            )
        out, summary = _gclip.train(os.fspath(config), None, progress, image_pipeline)
    return TrainResult(os.fspath(out), json.loads(summary))


def imagenet_templates() -> List[str]:
    """OpenAI's 80 ImageNet prompt templates (``"a photo of a {}."``, ...)."""
    return _gclip.imagenet_templates()


__all__ = [
    "load",
    "Model",
    "Index",
    "train",
    "TrainResult",
    "imagenet_templates",
    "GclipError",
    "ModelError",
    "ImageError",
    "InvalidInputError",
    "SearchIndexError",
    "TrainError",
    "__version__",
]

"""Loading image pipelines from any source, the device/dtype policy and the model cache.

Sources: an embedded model ("demo"), a local diffusers folder, a single `.safetensors`
checkpoint, or a Hugging Face hub id (through the normal cache; offline that cache must
already hold it). Loaded pipelines are kept in a small cache: the same model again is free,
and past the limit the least recently used one is freed.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import psutil
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image, DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from diffuse_kit import memory
from diffuse_kit.errors import InvalidRequestError, ModelNotFoundError
from diffuse_kit.progress import LatentPreviewer

DEMO_DIR = Path(__file__).parent / "demo"
EMBEDDED_IMAGE_MODELS = {"demo": DEMO_DIR / "image"}
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
T = TypeVar("T")


# -- device and dtype policy --------------------------------------------------------------


@cache
def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 matrix instructions (AVX512-BF16, AMX, Arm BF16)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False  # macOS/Windows: no cheap way to tell, so take the safe fp32 path
    flags = set(re.findall(r"\b\w+\b", " ".join(re.findall(r"^(?:flags|Features)\s*:(.*)$", cpuinfo, re.M))))
    return bool(flags & {"avx512_bf16", "amx_bf16"}) or (platform.machine() == "aarch64" and "bf16" in flags)


def use_physical_cores() -> None:
    """One compute thread per physical core (hyperthreads slow GEMMs down), unless the user
    chose a number through OMP_NUM_THREADS."""
    cores = psutil.cpu_count(logical=False)
    if "OMP_NUM_THREADS" not in os.environ and cores:
        torch.set_num_threads(cores)


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """fp16 on GPUs; on CPUs bf16 where the CPU computes it natively (2.5x faster per UNet
    step than fp32, measured here), fp32 elsewhere (emulated bf16 is slower than fp32)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype:
        try:
            return {
                "fp32": torch.float32,
                "float32": torch.float32,
                "fp16": torch.float16,
                "float16": torch.float16,
                "bf16": torch.bfloat16,
                "bfloat16": torch.bfloat16,
            }[dtype]
        except KeyError:
            raise InvalidRequestError(f"dtype: unknown dtype {dtype!r}; use fp32, fp16 or bf16", "dtype") from None
    if device.type in ("cuda", "mps"):
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


# -- the loaded model ---------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A loaded text-to-image pipeline, and what it was loaded with."""

    id: str
    pipeline: DiffusionPipeline
    device: torch.device
    dtype: torch.dtype
    low_memory: bool = False  # text encoders loaded per prompt from `folder`, VAE tiled
    folder: Path | None = None
    _img2img: DiffusionPipeline | None = field(default=None, repr=False)
    _previewer: LatentPreviewer | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """What infotext calls the model: the id, or a path's last part (paths stay private)."""
        return Path(self.id).name if os.sep in self.id and not HUB_ID.match(self.id) else self.id

    @property
    def native_size(self) -> tuple[int, int]:
        pipe = self.pipeline
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        return size, size

    def img2img(self) -> DiffusionPipeline:
        """The image-to-image pipeline over the same weights (from_pipe: no second copy)."""
        if self._img2img is None:
            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipeline, dtype=self.dtype)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def previewer(self) -> LatentPreviewer:
        if self._previewer is None:
            self._previewer = LatentPreviewer.fit(self.pipeline.vae)
        return self._previewer


# -- sources ------------------------------------------------------------------------------


def _from_folder(path: Path, dtype: torch.dtype, low_memory: bool, channels_last: bool) -> DiffusionPipeline:
    """The pipeline in `path`, its models streamed in `dtype` (memory.py), without its text
    encoders in low-memory mode."""
    skip = memory.TEXT_ENCODERS if low_memory else ()
    models = memory.load_models(path, dtype, skip=skip, channels_last=channels_last)
    absent = {name: None for name in skip if (path / name).is_dir()}
    return AutoPipelineForText2Image.from_pretrained(path, dtype=dtype, local_files_only=True, **models, **absent)


def hub_folder(model_id: str) -> Path:
    """The local snapshot of a hub pipeline (downloaded unless offline)."""
    try:
        return Path(DiffusionPipeline.download(model_id))
    except OSError as exc:  # huggingface_hub's offline / not-found errors are OSErrors
        raise hub_error(model_id, exc) from exc


def hub_error(model_id: str, exc: OSError) -> ModelNotFoundError:
    """Why a hub id did not load, and how to get it onto this machine."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    how = (
        "HF_HUB_OFFLINE is set and the Hugging Face cache does not hold it"
        if offline
        else "it could not be downloaded (no network, or no such repository)"
    )
    return ModelNotFoundError(
        f"model: cannot load {model_id!r}: {how}. On a machine with a network run "
        f"`hf download {model_id}` (it fills ~/.cache/huggingface), or pass a local folder."
    )


def _from_single_file(path: Path, dtype: torch.dtype, config: str | None) -> DiffusionPipeline:
    pipeline_class = _single_file_pipeline_class(path)
    try:
        return pipeline_class.from_single_file(
            str(path), config=config, dtype=dtype, local_files_only=config is not None
        )
    except OSError as exc:
        raise ModelNotFoundError(
            f"model: cannot load {path.name}: a single-file checkpoint needs the diffusers config of its "
            "architecture, which is neither given nor in the Hugging Face cache. Pass config=<a local "
            "diffusers folder of the same architecture> (CLI: --config), or go online once."
        ) from exc


def _single_file_pipeline_class(path: Path) -> type[DiffusionPipeline]:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors import safe_open

    # Meta tensors: the architecture is told by key names and shapes, without reading weights.
    with safe_open(path, framework="pt") as checkpoint:
        shapes = {key: torch.empty(checkpoint.get_slice(key).get_shape(), device="meta") for key in checkpoint.keys()}  # noqa: SIM118 (safe_open is no dict)
    kind = infer_diffusers_model_type(shapes)
    classes = {"xl_base": StableDiffusionXLPipeline, "v1": StableDiffusionPipeline, "v2": StableDiffusionPipeline}
    if kind not in classes:
        raise ModelNotFoundError(
            f"model: {path.name} looks like a {kind!r} checkpoint; single files of SD 1.x/2.x and SDXL "
            "load directly, other kinds load as diffusers folders"
        )
    return classes[kind]


def resolve(model: str) -> tuple[str, Path | None]:
    """Classify a model id: ("embedded"|"folder"|"file"|"hub", path)."""
    if model in EMBEDDED_IMAGE_MODELS:
        return "embedded", EMBEDDED_IMAGE_MODELS[model]
    path = Path(model).expanduser()
    if path.is_dir():
        return "folder", path.resolve()
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise ModelNotFoundError(f"model: no such file {model!r}")
        return "file", path.resolve()
    if HUB_ID.match(model):
        return "hub", None
    raise ModelNotFoundError(
        f"model: unknown model {model!r}: not an embedded model ({', '.join(EMBEDDED_IMAGE_MODELS)}), "
        "a diffusers folder, a .safetensors file or a hub id like 'owner/name'"
    )


def _folder_of(model: str, config: str | None) -> Path | None:
    """The pipeline folder a model id loads from (None for single files)."""
    kind, path = resolve(model)
    if kind == "file":
        return None
    folder = path if kind in ("embedded", "folder") else hub_folder(model)
    if not (folder / "model_index.json").is_file():
        raise ModelNotFoundError(f"model: {folder} is not a diffusers pipeline folder (it has no model_index.json)")
    return folder


def _wants_channels_last(device: torch.device, dtype: torch.dtype) -> bool:
    # oneDNN's bf16 convolutions are fast only in NHWC; in NCHW bf16 is slower than fp32.
    return device.type == "cpu" and dtype == torch.bfloat16 and cpu_has_native_bf16()


def _load_pipeline(model: str, folder: Path | None, device: torch.device, dtype: torch.dtype, config: str | None,
                   low_memory: bool) -> DiffusionPipeline:  # fmt: skip
    # Loading bars would flood notebooks and logs; load time is reported in the Result.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    if folder is None:
        return _from_single_file(resolve(model)[1], dtype, config)
    return _from_folder(folder, dtype, low_memory, _wants_channels_last(device, dtype))


def _prepare(pipe: DiffusionPipeline, device: torch.device, dtype: torch.dtype, low_memory: bool) -> DiffusionPipeline:
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)  # progress goes through our events instead
    if device.type == "cpu":
        use_physical_cores()
    if device.type == "cpu" and not low_memory:
        # One GEMM for q, k and v instead of three: 7% off an SD 1.5 UNet call at 256x256 here.
        # (diffusers keeps the unfused weights too, so not where memory is what counts.)
        pipe.unet.fuse_qkv_projections()
    if _wants_channels_last(device, dtype):  # a no-op for weights streamed in NHWC already
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    elif dtype == torch.bfloat16 and device.type == "cpu":
        # Emulated bf16 is slow: keep bf16 storage but compute each layer in fp32.
        for network in (
            pipe.unet,
            pipe.vae,
            getattr(pipe, "text_encoder", None),
            getattr(pipe, "text_encoder_2", None),
        ):
            if network is not None:
                memory.cast_layerwise(network)
    if low_memory:
        memory.tile_vae(pipe.vae)
    return pipe


# -- the cache ----------------------------------------------------------------------------


class ModelCache:
    """Loaded models by (id, ..., device, dtype), least recently used first out past `limit`.

    The default limit is $DIFFUSE_KIT_MAX_MODELS, else 1 on CPU (RAM runs out first there) and 2 on GPUs.
    """

    def __init__(self, limit: int | None = None) -> None:
        if limit is None and "DIFFUSE_KIT_MAX_MODELS" in os.environ:
            limit = int(os.environ["DIFFUSE_KIT_MAX_MODELS"])
        self.limit = limit
        self._models: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        model: str = "demo",
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        config: str | None = None,
        low_memory: bool | None = None,
    ) -> LoadedModel:
        if device is None and dtype is None and low_memory is None and (loaded := self._any(model)) is not None:
            return loaded  # generate(model=...) uses the model as load() loaded it
        target = pick_device(device)
        folder = _folder_of(model, config)
        if low_memory is None:
            low_memory = target.type == "cpu" and folder is not None and memory.wants_low_memory(folder)
        # Low-memory mode stores bf16 whatever the CPU (computing in fp32 where bf16 is emulated).
        precision = torch.bfloat16 if low_memory and dtype is None else pick_dtype(target, dtype)

        def build() -> LoadedModel:
            pipe = _load_pipeline(model, folder, target, precision, config, low_memory)
            pipe = _prepare(pipe, target, precision, low_memory)
            return LoadedModel(model, pipe, target, precision, low_memory, folder)

        return self.fetch((model, str(target), precision, low_memory), target, build)

    def _any(self, model: str) -> LoadedModel | None:
        """The most recently used loaded copy of `model`, whatever it was loaded with."""
        with self._lock:
            for key in reversed(self._models):
                if key[0] == model:
                    self._models.move_to_end(key)
                    return self._models[key]
        return None

    def fetch(self, key: tuple, device: torch.device, build: Callable[[], T]) -> T:
        """The model cached under `key`, or `build()`'s, made room for first."""
        with self._lock:  # one load at a time: two threads must not load the same weights twice
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            self._make_room(device, keep=1)
            loaded = self._models[key] = build()
            return loaded

    def _make_room(self, device: torch.device, keep: int) -> None:
        limit = self.limit if self.limit is not None else (1 if device.type == "cpu" else 2)
        while self._models and len(self._models) + keep > limit:
            self._models.popitem(last=False)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def loaded(self) -> list[Any]:
        return list(self._models.values())

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            gc.collect()


CACHE = ModelCache()


def load(
    model: str = "demo",
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    config: str | None = None,
    low_memory: bool | None = None,
) -> LoadedModel:
    """The loaded model, from the cache when it is there (a second call is free).

    `device` ("cpu", "cuda", "mps"; default: the best present) and `dtype` ("fp32", "fp16",
    "bf16"; default: the policy above) override the defaults; `config` is the diffusers
    folder or hub id whose configs a single `.safetensors` file needs. `low_memory` (default:
    on when RAM is short) keeps the text encoders out of memory between prompts (memory.py).
    Without options, a model already loaded is returned as it was loaded (so `generate(model=...)`
    after `load(model, dtype="fp32")` runs in fp32).
    """
    return CACHE.get(model, device=device, dtype=dtype, config=config, low_memory=low_memory)


@dataclass(frozen=True)
class CachedModel:
    id: str
    kind: str  # "image pipeline" | "text model" | "other"
    size_gb: float


def cached_hub_models() -> list[CachedModel]:
    """Models in the Hugging Face cache (nothing is downloaded to find out)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        repos = scan_cache_dir().repos
    except CacheNotFound:
        return []
    return [
        CachedModel(repo.repo_id, _cached_kind(repo), repo.size_on_disk / 1e9)
        for repo in sorted(repos, key=lambda r: r.repo_id)
        if repo.repo_type == "model"
    ]


def known_image_models(extra: list[str] = ()) -> list[str]:
    """Image model ids a picker can offer: the embedded ones, cached hub pipelines, `extra`."""
    ids = [*EMBEDDED_IMAGE_MODELS, *(m.id for m in cached_hub_models() if m.kind == "image pipeline"), *extra]
    return list(dict.fromkeys(ids))


def _cached_kind(repo) -> str:
    files = {f.file_name: f.file_path for revision in repo.revisions for f in revision.files}
    if "model_index.json" in files:
        return "image pipeline"
    if "config.json" in files:
        try:
            architectures = json.loads(files["config.json"].read_text()).get("architectures") or []
        except (OSError, ValueError):
            architectures = []
        if any(name.endswith("ForCausalLM") for name in architectures):
            return "text model"
    return "other"

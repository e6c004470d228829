"""Quiet two notices that are noise here, before diffusers/transformers are imported.

- Without torchvision (whose PyPI wheels do not match CPU-only torch builds), transformers
  warns for each image processor class that diffusers' pipelines import, although the PIL
  fallback it takes is exactly what diffuse_kit uses.
- diffusers 0.42 warns on every `to(dtype)` that modules "should be kept in float32: []",
  even when that list is empty, as it is for `from_pipe(..., dtype=...)` on SD models.
- diffusers 0.42 passes huggingface_hub a deprecated `local_dir_use_symlinks` argument, which
  prints a UserWarning just before our "model not found" error when a hub id is not cached.
"""

import logging
import warnings

_NOISE = {
    "transformers.utils.import_utils": "requires torchvision (not installed)",
    "diffusers.models.modeling_utils": "should be kept in float32: []",
}


class _DropNotice(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


for _logger, _text in _NOISE.items():
    logging.getLogger(_logger).addFilter(_DropNotice(_text))

warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument is deprecated", category=UserWarning)

"""Read ``.safetensors`` weight files (timm's and Hugging Face's format) without a dependency.

The format: an 8-byte little-endian header length, a JSON header mapping each tensor name to its
dtype, shape and byte range, then the raw little-endian data. Nothing is executed on load.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch

from oddeye.errors import ModelFileError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_MAX_HEADER = 100 * 1024 * 1024


def looks_like_safetensors(head: bytes) -> bool:
    """True when the first bytes of a file are a safetensors header start (length, then '{')."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= struct.unpack("<Q", head[:8])[0] <= _MAX_HEADER


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file as CPU tensors; ModelFileError naming the file and the
    problem (truncated, bad header, unknown dtype, ranges outside the data)."""
    path = Path(path)
    data = path.read_bytes()

    def bad(problem: str) -> ModelFileError:
        return ModelFileError(f"{path}: not a valid safetensors file ({problem}); it is corrupt "
                              f"or truncated, delete it and fetch it again")

    if len(data) < 8:
        raise bad(f"{len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(_MAX_HEADER, len(data) - 8):
        raise bad(f"header length {n} exceeds the file's {len(data)} bytes")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    body = memoryview(data)[8 + n:]
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"entry {name!r} lacks a known dtype, shape or data_offsets") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not 0 <= begin <= end <= len(body) or end - begin != math.prod(shape) * itemsize:
            raise bad(f"tensor {name!r} has byte range {begin}..{end} for shape {shape} "
                      f"{info['dtype']}, but the data holds {len(body)} bytes")
        raw = bytearray(body[begin:end])  # a writable copy: the tensor owns its memory
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = flat.reshape(shape)
    return out

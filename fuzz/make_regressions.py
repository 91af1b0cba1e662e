"""Writes fuzz/regressions/: the smallest checkpoints that reproduce each loader crash found.

    python3 fuzz/make_regressions.py [OUT_DIR]     (default: fuzz/regressions next to this file)

Each file is a valid safetensors container (the data region is one F64 schedule.betas
vector, nothing else, under its CRC-32C: format 2 requires the checksum since issue 19) whose
metadata holds a format-2 configuration (library_version 0.3.0) the loader builds a model
from before it looks at any model tensor. Each configuration below crashed
ddpm_model_load (segfault or abort, ASan report under `make fuzz`) at the commit that
added it; a fixed loader returns DDPM_ERR_FORMAT for every one. The files are committed
(under 1 KB each, JSON text but for 8 bytes) so that `make fuzz` and `make fuzz-smoke`
run them; this script is how they were made.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

MLP = {"kind": "mlp", "data_dim": 2, "hidden": 4, "depth": 1, "time_embed_dim": 4}
UNET = {"kind": "unet", "channels": 1, "height": 2, "width": 2, "base_channels": 2, "channel_mult": [1, 1],
        "res_blocks": 1, "attention_levels": [1], "attention_heads": 1, "groups": 1, "dropout": 0,
        "time_embed_dim": 2}
TRAINING = {"adam_eps": 1e-08, "beta1": 0.9, "beta2": 0.999, "ema_decay": 0.995, "grad_clip": 1,
            "label_dropout": 0.1, "learning_rate": 0.001, "seed": 0, "weight_decay": 0}

# name -> the network configuration; what it did to the loader at the commit that added it.
CASES = {
    # Size arithmetic wraps (-Ounchecked): a small buffer, then writes past it. SIGSEGV;
    # ASan: heap-buffer-overflow in Philox.fillUniform from ParameterSet.init.
    "mlp-hidden-2e62": {**MLP, "hidden": 2**62},
    "mlp-data-dim-int64-max": {**MLP, "data_dim": 2**63 - 1},
    "unet-channel-mult-int32-max": {**UNET, "channel_mult": [1, 2**31 - 1]},
    # No upper bound: "failed to allocate N bytes" aborts the process (SIGABRT); ASan:
    # allocation-size-too-big. The first was found by the fuzzer (hidden = 1048576, data_dim 19).
    "mlp-hidden-2e20": {**MLP, "data_dim": 19, "hidden": 2**20},
    "mlp-hidden-65536": {**MLP, "hidden": 65536},
    "mlp-depth-int32-max": {**MLP, "depth": 2**31 - 1},
    "mlp-data-dim-int32-max": {**MLP, "data_dim": 2**31 - 1},
    # No upper bound, found by the fuzzer as a timeout: a UNet with 2^31 - 1 residual blocks per
    # level is built block by block; the load ran 94 s, its memory growing, until it was killed.
    "unet-res-blocks-int32-max": {**UNET, "res_blocks": 2**31 - 1},
    # Found by the fuzzer: channel_mult entries that fit int32 but not in memory (allocation-size-too-big).
    "unet-channel-mult-2e24": {**UNET, "base_channels": 255, "channel_mult": [2**24, 1]},
}

# Version-1 files (library 0.1) keep num_classes inside the network's JSON; the fuzzer found
# that 2^32 classes abort the load (a class embedding of 2^32 rows: allocation-size-too-big).
V1_CASES = {
    "v1-mlp-num-classes-2e32": {"mlp": {"_0": {"dataDim": 3, "depth": 1, "hidden": 8, "numClasses": 2**32,
                                              "timeEmbedDim": 8}}},
}
V1_TRAINING = {"emaDecay": 0.995, "gradClip": 1, "labelDropout": 0.2, "seed": 5,
               "optimizer": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-08, "learningRate": 0.001, "weightDecay": 0.01}}


def compact(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"))


def checkpoint(network: dict) -> bytes:
    """A format-2 checkpoint header with `network`, a linear schedule of T = 1 and no model tensors."""
    return container({
        "format": "swiftddpm-checkpoint", "format_version": "2", "library_version": "0.3.0",
        "network": compact(network), "training": compact(TRAINING), "conditioning": '{"kind":"none"}',
        "schedule": '{"beta_end":0.02,"beta_start":0.02,"kind":"linear"}',
        "step": "0", "optimizer_step": "0", "rng_seed": "0", "rng_counter": "0",
    })


def checkpoint_v1(network: dict) -> bytes:
    """The same in format version 1 (library 0.1's Codable encoding of the configuration)."""
    return container(checksum=False, metadata={  # 0.1 wrote no checksum
        "format": "swiftddpm-checkpoint", "format_version": "1", "library_version": "0.1.0",
        "network": compact(network), "training": compact(V1_TRAINING),
        "schedule_kind": '{"linear":{"betaEnd":0.02,"betaStart":0.02}}',
        "step": "0", "optimizer_step": "0", "rng_seed": "0", "rng_counter": "0",
    })


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected 0x82F63B78), bit by bit: the checksum the library verifies."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def container(metadata: dict, checksum: bool = True) -> bytes:
    """A safetensors file: metadata and one F64 schedule.betas = [0.02] (with its CRC-32C)."""
    betas = struct.pack("<d", 0.02)
    if checksum:
        metadata = {**metadata, "data_crc32c": f"{crc32c(betas):08x}"}
    header = {"__metadata__": metadata,
              "schedule.betas": {"dtype": "F64", "shape": [1], "data_offsets": [0, len(betas)]}}
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + betas


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, network in CASES.items():
        (out / name).write_bytes(checkpoint(network))  # no .safetensors: .gitignore drops those
    for name, network in V1_CASES.items():
        (out / name).write_bytes(checkpoint_v1(network))
    print(f"{len(CASES) + len(V1_CASES)} regression inputs in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "regressions")

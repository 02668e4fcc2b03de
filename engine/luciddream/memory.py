"""How much memory a dream may still take, and the largest tile that fits in it.

Why: a fixed tile either wastes a big machine or fails on a small one (a 2048² dream under a 1.5 GB address-space
limit failed at tile 640 and worked at 256). The engine now picks the tile from what is free, unless the user gave
one, and `max_memory` caps it. The model below comes from measurement (docs/performance.md, "Memory"): peak RSS of
Lite0's forward + hand-written backward per window pixel, and of the tiled loop's working copies per region pixel.
It errs on the high side; the out-of-memory retry in methods/tiled.py covers the rest.
"""
from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import Optional

MB = 1 << 20
AUTO_TILE = 640      # what "auto" chooses when memory is ample: the default tile before auto (same pictures)
MIN_TILE = 128       # the floor for the automatic choice and the out-of-memory retry
TILE_STEP = 64       # automatic tiles are multiples of this (two strides of the network's coarsest grid)
WINDOW_MARGIN = 32   # the jitter margin a window carries beside its tile (methods/tiled.JITTER)

# Measured (Lite0 to its deepest block, 2 threads, torch 2.13 CPU): 672² window +399 MB RSS / +466 MB address
# space, 1024² +880 / +1025 MB, 256² +67 / +98 MB. The model takes the address-space figures, which are the larger.
WINDOW_BYTES_PER_PX = 1000
WINDOW_FIXED_BYTES = 40 * MB
# The tiled loop's copies of the region (octave original, working image, padded image and gradient, mask, norm
# temporaries, the merge): 81–90 B per region pixel measured for 1–4 octaves on 1–9 MP; the model takes 100.
REGION_BYTES_PER_PX = 100
# Families with the plain autograd backward keep about twice the activations (docs/performance.md, trunk.py).
AUTOGRAD_FACTOR = 2.0
RESERVE_BYTES = 64 * MB  # allocator slack and thread arenas beside the model


@dataclass(frozen=True)
class Budget:
    """Bytes a dream may still allocate on its device, and what limited it (said to the user when nothing fits)."""

    bytes: int
    reason: str


def _proc_status(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _mem_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def resident_bytes() -> int:
    """This process's resident memory now (0 where it cannot be read)."""
    rss = _proc_status("VmRSS")
    if rss is not None:
        return rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS: bytes, the peak (an upper bound)
    return int(peak) if os.uname().sysname == "Darwin" else int(peak) * 1024


def cpu_budget(max_memory_mb: int = 0) -> Budget:
    """What the CPU side may still allocate: free RAM, the address-space limit's headroom, and the user's cap."""
    options = []
    available = _mem_available()
    if available is not None:
        options.append(Budget(available, f"{available // MB} MB of RAM free"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    size = _proc_status("VmSize")
    if soft != resource.RLIM_INFINITY:
        map_big_blocks()  # freed memory must leave the address space, not linger in the heap
    if soft != resource.RLIM_INFINITY and size is not None:
        options.append(Budget(soft - size, f"an address-space limit of {soft // MB} MB"))
    if max_memory_mb:
        options.append(Budget(max_memory_mb * MB - resident_bytes(), f"--max-memory {max_memory_mb} MB"))
    if not options:
        return Budget(1 << 62, "no known limit")
    return min(options, key=lambda b: b.bytes)


def device_budget(device, max_memory_mb: int = 0) -> Budget:
    """The budget on `device` (a torch.device): free VRAM on CUDA (plus what torch holds cached), else the CPU's."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        options = [Budget(free, f"{free // MB} MB of GPU memory free")]
        if max_memory_mb:
            options.append(Budget(max_memory_mb * MB - torch.cuda.memory_allocated(device),
                                  f"--max-memory {max_memory_mb} MB"))
        return min(options, key=lambda b: b.bytes)
    if device.type == "mps":
        limit = torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory()
        options = [Budget(limit, f"{limit // MB} MB of GPU memory free")]
        if max_memory_mb:
            options.append(Budget(max_memory_mb * MB - torch.mps.current_allocated_memory(),
                                  f"--max-memory {max_memory_mb} MB"))
        return min(options, key=lambda b: b.bytes)
    return cpu_budget(max_memory_mb)


def estimate(tile: int, height: int, width: int, hand_written: bool = True) -> int:
    """Peak bytes a tiled dream of an (height, width) region still allocates at this tile."""
    wy, wx = min(tile, height) + WINDOW_MARGIN, min(tile, width) + WINDOW_MARGIN
    window = WINDOW_FIXED_BYTES + WINDOW_BYTES_PER_PX * wy * wx
    if not hand_written:
        window = int(window * AUTOGRAD_FACTOR)
    return RESERVE_BYTES + REGION_BYTES_PER_PX * height * width + window


def choose_tile(requested: int, height: int, width: int, budget: Budget, capped: bool,
                hand_written: bool = True) -> int:
    """The tile to dream with: the user's (0: auto, at most AUTO_TILE), lowered to the largest multiple of
    TILE_STEP that fits the budget when the tile is automatic or the user capped the memory.

    An explicit tile without a cap is kept as given (the same picture as before auto tiles); when nothing fits a
    user's cap, a DreamError says how much the smallest tile needs.
    """
    from .errors import DreamError

    start = requested or AUTO_TILE
    if requested and not capped:
        return requested
    tile = start
    while tile > MIN_TILE and estimate(tile, height, width, hand_written) > budget.bytes:
        tile = max(MIN_TILE, (tile - 1) // TILE_STEP * TILE_STEP)
    need = estimate(tile, height, width, hand_written)
    if need > budget.bytes and budget.reason.startswith("--max-memory"):
        raise DreamError(f"This dream needs about {need // MB + resident_bytes() // MB} MB even at the smallest "
                         f"tile ({MIN_TILE} px) for its {width}×{height} region, more than {budget.reason} allows: "
                         f"raise --max-memory, or select a smaller region or image.")
    return tile


def map_big_blocks() -> None:
    """Keep blocks of 256 KB and more out of glibc's heap, so that freeing them returns their address space.

    glibc raises its mmap threshold after large frees (up to 32 MB), so tensors then come from the heap, and what
    they leave behind when freed keeps counting against RLIMIT_AS: after a failed 640-tile attempt the address
    space stayed 250 MB larger although the RSS had dropped, and the retry at a smaller tile failed where a fresh
    run fitted (measured). A fixed threshold (which also ends the dynamic adjustment) costs page faults, so it is
    only set where the address space is limited, or after running out of memory.
    """
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def release_after_out_of_memory() -> None:
    """After an allocation failed: big blocks mapped from now on, and freed heap pages handed back (malloc_trim)."""
    map_big_blocks()
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass

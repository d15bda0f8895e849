"""How much memory one local device has, for refusing work that cannot fit before allocating it."""
from __future__ import annotations

import jax

GiB = 1024 ** 3


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # no /proc: not Linux
        return None


def _stats() -> dict | None:
    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return stats if stats and stats.get("bytes_limit") else None


def device_memory_bytes() -> int | None:
    """Memory of one local device: its allocator's limit on GPU/TPU; on CPU the host memory now
    available, shared by the local (simulated) devices."""
    stats = _stats()
    if stats:
        return int(stats["bytes_limit"])
    available = _meminfo_available()
    return None if available is None else available // max(1, jax.local_device_count())


def device_free_bytes() -> int | None:
    """Memory one local device can still allocate: limit - in use on GPU/TPU; on CPU the host
    memory now available, shared by the local (simulated) devices."""
    stats = _stats()
    if stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    available = _meminfo_available()
    return None if available is None else available // max(1, jax.local_device_count())


def size(num_bytes: int) -> str:
    """'1.23 GiB'; below a tenth of a GiB '45.6 MiB', below a tenth of a MiB '12.3 KiB', below 1 KiB '520 B'."""
    if num_bytes >= GiB / 10:
        return f"{num_bytes / GiB:.2f} GiB"
    if num_bytes >= 2 ** 20 / 10:
        return f"{num_bytes / 2 ** 20:.1f} MiB"
    return f"{num_bytes / 1024:.1f} KiB" if num_bytes >= 1024 else f"{num_bytes} B"

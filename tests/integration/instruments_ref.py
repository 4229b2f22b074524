"""instruments_ref.py -- the synthetic instruments' formulas, as their
READMEs write them (plugins/collectors/camera, telemetry), for the tests
that check what reached a file: a frame regenerated from its number, and
the telemetry's jitter."""

import numpy as np


def frame(n, width, height, dtype, seed):
    """Frame `n` of a camera of this size, dtype and seed."""
    y, x = np.mgrid[0:height, 0:width].astype(np.uint32)
    h = x * np.uint32(0x9E3779B1) + y * np.uint32(0x85EBCA77) \
        + np.uint32((n * 0xC2B2AE3D + seed) & 0xFFFFFFFF)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    if dtype == "uint8":
        return (h >> np.uint32(24)).astype(np.uint8)
    if dtype == "uint16":
        return (h >> np.uint32(16)).astype(np.uint16)
    return (h >> np.uint32(8)).astype(np.float32) / np.float32(16777216.0)


def splitmix(x):
    m = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def jitter(seed, n, k):
    """The telemetry's jitter of sample n, field k: in [-1, 1)."""
    z = splitmix((seed * 0x100000001B3 + n * 8 + k) & ((1 << 64) - 1))
    return (z >> 11) * 2.0 ** -53 * 2.0 - 1.0

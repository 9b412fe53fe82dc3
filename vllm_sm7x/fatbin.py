"""Which GPUs a CUDA library has code for, read from the fat binary in its ELF file.

nvcc embeds one fat binary container per translation unit in the `.nv_fatbin` section; each
container lists images, machine code (SASS) or PTX, each for one architecture. The headers are plain
even when the images are compressed, so reading them needs neither a GPU nor a CUDA toolkit
(`cuobjdump --list-elf` reports the same SASS architectures, where a toolkit is installed).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
_CONTAINER = struct.Struct("<IHHQ")  # magic, version, header size, size of the images that follow
_IMAGE_KINDS = {1: "ptx", 2: "sass"}


@dataclass(frozen=True)
class CudaImage:
    kind: str  # "sass" (machine code for one architecture) or "ptx" (compiled by the driver at load)
    arch: int  # compute capability as major * 10 + minor: 70 for sm_70


def _section(f, name: bytes) -> tuple[int, int] | None:
    """(file offset, size) of the named section of a 64-bit little-endian ELF file, or None."""
    header = f.read(64)
    if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", header, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", header, 0x3A)
    f.seek(shoff)
    table = f.read(shentsize * shnum)
    sections = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
    _, _, _, _, names_offset, names_size = sections[shstrndx]
    f.seek(names_offset)
    names = f.read(names_size)
    for name_at, _, _, _, offset, size in sections:
        if names[name_at:names.index(b"\0", name_at)] == name:
            return offset, size
    return None


def cuda_images(library: str | Path) -> frozenset[CudaImage]:
    """Every (kind, architecture) image in the library's fat binaries; empty if it has none."""
    images: set[CudaImage] = set()
    with open(library, "rb") as f:
        section = _section(f, b".nv_fatbin")
        if section is None:
            return frozenset()
        start, size = section
        at = 0
        while at + _CONTAINER.size <= size:
            f.seek(start + at)
            magic, _, header_size, images_size = _CONTAINER.unpack(f.read(_CONTAINER.size))
            if magic != FATBIN_MAGIC:  # padding between containers (they are 8-byte aligned)
                at += 8
                continue
            if header_size < _CONTAINER.size:
                raise ValueError(f"{library}: malformed fat binary container at section offset {at:#x}")
            image_at, end = at + header_size, at + header_size + images_size
            while image_at < end:
                f.seek(start + image_at)
                head = f.read(32)
                kind, _, image_header_size, payload_size = struct.unpack_from("<HHIQ", head)
                arch, = struct.unpack_from("<I", head, 28)
                if image_header_size < 32:  # a header too short to hold its own fields: the walk would not advance
                    raise ValueError(f"{library}: malformed fat binary image at section offset {image_at:#x}")
                if kind in _IMAGE_KINDS:
                    images.add(CudaImage(_IMAGE_KINDS[kind], arch))
                image_at += image_header_size + payload_size
            at = end + (-end % 8)
    return frozenset(images)


def runs_on(images: frozenset[CudaImage], capability: tuple[int, int]) -> bool:
    """Whether a GPU of this capability can run the library's kernels: machine code of its major
    version and a minor version no newer than its own, or PTX no newer than the GPU (the driver
    compiles it)."""
    major, minor = capability
    return any((image.kind == "sass" and image.arch // 10 == major and image.arch % 10 <= minor)
               or (image.kind == "ptx" and image.arch <= major * 10 + minor) for image in images)

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
# Image header flags marking code for one architecture only (sm_90a) or for its family (sm_100f).
_ARCH_SPECIFIC, _FAMILY_SPECIFIC = 0x100000, 0x200000


@dataclass(frozen=True)
class CudaImage:
    kind: str  # "sass" (machine code for one architecture) or "ptx" (compiled by the driver at load)
    arch: int  # compute capability as major * 10 + minor: 70 for sm_70
    variant: str = ""  # "a": that architecture only (sm_90a); "f": its family (sm_100f); "": portable


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
    """Every image in the library's fat binaries; empty if it has none. ValueError if the file is not a
    64-bit little-endian ELF file or its fat binary is malformed."""
    try:
        with open(library, "rb") as f:
            return _read_images(f)
    except (struct.error, IndexError) as error:  # a header cut short, a section index out of range
        raise ValueError(f"{library}: malformed ELF or fat binary ({error})") from error


def _read_images(f) -> frozenset[CudaImage]:
    images: set[CudaImage] = set()
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
        image_at, end = at + header_size, at + header_size + images_size
        if header_size < _CONTAINER.size or end > size:
            raise ValueError(f"malformed fat binary container at section offset {at:#x}")
        while image_at < end:
            f.seek(start + image_at)
            head = f.read(48)
            kind, _, image_header_size, payload_size = struct.unpack_from("<HHIQ", head)
            arch, = struct.unpack_from("<I", head, 28)
            flags, = struct.unpack_from("<Q", head, 40)
            if image_header_size < len(head):  # a header too short for its own fields: the walk would stall
                raise ValueError(f"malformed fat binary image at section offset {image_at:#x}")
            if kind in _IMAGE_KINDS:
                variant = "a" if flags & _ARCH_SPECIFIC else "f" if flags & _FAMILY_SPECIFIC else ""
                images.add(CudaImage(_IMAGE_KINDS[kind], arch, variant))
            image_at += image_header_size + payload_size
        at = end + (-end % 8)
    return frozenset(images)


def runs_on(images: frozenset[CudaImage], capability: tuple[int, int]) -> bool:
    """Whether a GPU of this capability can run any of these images: machine code of its major version and
    a minor version no newer than its own, or PTX no newer than the GPU (the driver compiles it); an
    architecture-specific image ("a") only on exactly its architecture."""
    major, minor = capability
    device = major * 10 + minor

    def runs(image: CudaImage) -> bool:
        if image.variant == "a":
            return image.arch == device
        if image.kind == "sass":
            return image.arch // 10 == major and image.arch % 10 <= minor
        return image.arch <= device

    return any(runs(image) for image in images)

"""Reading which GPUs a CUDA library has code for from its fat binary, and the all-reduce that follows."""
import importlib.util
import logging
import struct

import pytest

from vllm_sm7x import op_policy
from vllm_sm7x.activation import Gpu
from vllm_sm7x.fatbin import FATBIN_MAGIC, CudaImage, cuda_images, runs_on
from vllm_sm7x.op_policy import VLLM_KERNELS_MODULE, custom_allreduce_choice

KINDS = {"ptx": 1, "sass": 2}


def fatbin_container(images: list[tuple[str, int, int]]) -> bytes:
    """One container as nvcc lays it out: (kind, arch, payload bytes) per image, 64-byte image headers."""
    body = b""
    for kind, arch, payload in images:
        header = struct.pack("<HHIQII", KINDS[kind], 0x0101, 64, payload, payload, 0)
        header += struct.pack("<HHI", 8, 1, arch) + bytes(64 - 32)
        body += header + bytes([0xA5]) * payload  # payload bytes that never look like a header
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def elf_with_sections(sections: dict[bytes, bytes]) -> bytes:
    """A minimal 64-bit little-endian ELF file holding these sections (and its section-name table)."""
    names = b"\0" + b"".join(name + b"\0" for name in [*sections, b".shstrtab"])
    contents = [b"", *sections.values(), names]
    name_offsets = [0] + [names.index(name + b"\0") for name in [*sections, b".shstrtab"]]
    data, offsets = b"", []
    for content in contents:
        offsets.append(64 + len(data))
        data += content + bytes(-len(content) % 8)
    shoff = 64 + len(data)
    table = b"".join(struct.pack("<IIQQQQIIQQ", name_offsets[i], 1 if i else 0, 0, 0, offsets[i], len(contents[i]),
                                 0, 0, 8, 0) for i in range(len(contents)))
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0,
                                                                     0, 64, len(contents), len(contents) - 1)
    return header + data + table


def test_every_image_of_every_container_is_read_past_padding(tmp_path):
    first = fatbin_container([("sass", 75, 37), ("sass", 90, 8), ("ptx", 90, 101)])
    second = fatbin_container([("sass", 70, 3)])
    section = first + bytes(-len(first) % 8) + bytes(16) + second  # containers 8-byte aligned, then a gap
    library = tmp_path / "lib.so"
    library.write_bytes(elf_with_sections({b".text": b"\x90" * 13, b".nv_fatbin": section}))
    assert cuda_images(library) == {CudaImage("sass", 75), CudaImage("sass", 90), CudaImage("ptx", 90),
                                    CudaImage("sass", 70)}


def test_a_library_without_a_fat_binary_has_no_images(tmp_path):
    library = tmp_path / "lib.so"
    library.write_bytes(elf_with_sections({b".text": b"\x90" * 5}))
    assert cuda_images(library) == frozenset()


def test_a_file_that_is_not_elf_is_refused(tmp_path):
    library = tmp_path / "lib.so"
    library.write_bytes(b"MZ" + bytes(100))
    with pytest.raises(ValueError, match="not a 64-bit little-endian ELF"):
        cuda_images(library)


def test_a_malformed_image_header_is_refused_instead_of_looping(tmp_path):
    container = bytearray(fatbin_container([("sass", 75, 16)]))
    struct.pack_into("<I", container, 16 + 4, 0)  # the image's header size
    library = tmp_path / "lib.so"
    library.write_bytes(elf_with_sections({b".nv_fatbin": bytes(container)}))
    with pytest.raises(ValueError, match="malformed fat binary image"):
        cuda_images(library)


def test_machine_code_runs_on_later_minor_versions_of_its_major_and_ptx_on_anything_newer():
    volta = frozenset({CudaImage("sass", 70)})
    assert runs_on(volta, (7, 0)) and runs_on(volta, (7, 5))
    assert not runs_on(volta, (8, 0))
    turing = frozenset({CudaImage("sass", 75)})
    assert not runs_on(turing, (7, 0)) and runs_on(turing, (7, 5))
    ptx80 = frozenset({CudaImage("ptx", 80)})
    assert not runs_on(ptx80, (7, 5)) and runs_on(ptx80, (8, 0)) and runs_on(ptx80, (9, 0))


def vllm_kernel_images():
    spec = importlib.util.find_spec(VLLM_KERNELS_MODULE)
    if spec is None:
        pytest.skip(f"{VLLM_KERNELS_MODULE} is not installed")
    return cuda_images(spec.origin)


def test_pypi_vllm_has_turing_and_hopper_code_and_none_for_volta():
    images = vllm_kernel_images()
    assert runs_on(images, (7, 5)) and runs_on(images, (9, 0))
    assert not runs_on(images, (7, 0))


def test_a_v100_keeps_vllms_custom_all_reduce_only_with_a_vllm_built_for_it():
    pypi = vllm_kernel_images()
    allowed, reason = custom_allreduce_choice(pypi, [(7, 0)] * 4)
    assert not allowed
    assert reason.startswith("NCCL") and "7.0" in reason and "sass_75" in reason and "build_vllm_sm70.sh" in reason
    built_for_sm70 = frozenset({CudaImage("sass", 70), CudaImage("sass", 75)})
    assert custom_allreduce_choice(built_for_sm70, [(7, 0)] * 4) == (
        True, "vLLM's custom all-reduce (vLLM's kernels have code for these GPUs)")
    assert custom_allreduce_choice(pypi, [(7, 5), (7, 5)])[0]  # Turing with PyPI's vLLM
    assert custom_allreduce_choice(pypi, [(9, 0)])[0]  # emulation on a Hopper GPU: PyPI's kernels run there
    mixed = custom_allreduce_choice(pypi, [(7, 5), (7, 0)])
    assert not mixed[0] and "capability 7.0 " in mixed[1]


def test_the_machines_all_reduce_is_decided_from_the_installed_vllm_and_logged_once(monkeypatch, caplog):
    vllm_kernel_images()
    monkeypatch.setattr("vllm_sm7x.activation.visible_gpus", lambda: [Gpu(0, "Tesla V100-SXM2-32GB", (7, 0))] * 4)
    monkeypatch.delenv("_VLLM_SM7X_ALLREDUCE_LOGGED", raising=False)
    op_policy.vllm_custom_allreduce_runs.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="vllm.sm7x"):
            assert op_policy.vllm_custom_allreduce_runs() is False
            op_policy.vllm_custom_allreduce_runs.cache_clear()  # a worker process: decides again, logs nothing
            assert op_policy.vllm_custom_allreduce_runs() is False
    finally:
        op_policy.vllm_custom_allreduce_runs.cache_clear()
    lines = [r.getMessage() for r in caplog.records if "all-reduce" in r.getMessage()]
    assert len(lines) == 1 and "tensor-parallel all-reduce: NCCL" in lines[0]

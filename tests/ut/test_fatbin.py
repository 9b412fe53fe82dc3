"""Reading which GPUs a CUDA library has code for from its fat binary, and the all-reduce that follows."""
import logging
import struct

import pytest

from vllm_sm7x import op_policy
from vllm_sm7x.activation import Gpu
from vllm_sm7x.fatbin import FATBIN_MAGIC, CudaImage, cuda_images, runs_on
from vllm_sm7x.op_policy import VLLM_KERNELS_MODULE, custom_allreduce_choice

KINDS = {"ptx": 1, "sass": 2}


VARIANT_FLAGS = {"": 0x8011, "a": 0x108011, "f": 0x208011}  # as vLLM 0.26's own libraries set them


def fatbin_container(images: list[tuple]) -> bytes:
    """One container as nvcc lays it out: (kind, arch, payload bytes[, variant]) per image, 64-byte image
    headers."""
    body = b""
    for kind, arch, payload, *variant in images:
        header = struct.pack("<HHIQII", KINDS[kind], 0x0101, 64, payload, payload, 0)
        header += struct.pack("<HHIIIQ", 8, 1, arch, 0, 0, VARIANT_FLAGS[variant[0] if variant else ""])
        header += bytes(64 - len(header))
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
    first = fatbin_container([("sass", 75, 37), ("sass", 90, 8, "a"), ("ptx", 90, 101), ("sass", 100, 5, "f")])
    second = fatbin_container([("sass", 70, 3)])
    section = first + bytes(-len(first) % 8) + bytes(8) + second  # containers 8-byte aligned, then a gap
    library = tmp_path / "lib.so"
    library.write_bytes(elf_with_sections({b".text": b"\x90" * 13, b".nv_fatbin": section}))
    assert cuda_images(library) == {CudaImage("sass", 75), CudaImage("sass", 90, "a"), CudaImage("ptx", 90),
                                    CudaImage("sass", 100, "f"), CudaImage("sass", 70)}


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


def test_a_container_running_past_its_section_is_refused(tmp_path):
    container = bytearray(fatbin_container([("sass", 75, 16)]))
    struct.pack_into("<Q", container, 8, 10_000)  # the container's size
    library = tmp_path / "lib.so"
    library.write_bytes(elf_with_sections({b".nv_fatbin": bytes(container)}))
    with pytest.raises(ValueError, match="malformed fat binary container"):
        cuda_images(library)


def test_a_truncated_file_is_refused_as_malformed(tmp_path):
    whole = elf_with_sections({b".nv_fatbin": fatbin_container([("sass", 75, 16)])})
    library = tmp_path / "lib.so"
    library.write_bytes(whole[:70])  # the header points at a section table that is not there
    with pytest.raises(ValueError, match="malformed"):
        cuda_images(library)


def test_machine_code_runs_on_later_minor_versions_of_its_major_and_ptx_on_anything_newer():
    volta = frozenset({CudaImage("sass", 70)})
    assert runs_on(volta, (7, 0)) and runs_on(volta, (7, 5))
    assert not runs_on(volta, (8, 0))
    turing = frozenset({CudaImage("sass", 75)})
    assert not runs_on(turing, (7, 0)) and runs_on(turing, (7, 5))
    ptx80 = frozenset({CudaImage("ptx", 80)})
    assert not runs_on(ptx80, (7, 5)) and runs_on(ptx80, (8, 0)) and runs_on(ptx80, (9, 0))
    hopper_only = frozenset({CudaImage("sass", 90, "a"), CudaImage("ptx", 90, "a")})
    assert runs_on(hopper_only, (9, 0)) and not runs_on(hopper_only, (10, 0))


def vllm_kernel_images():
    try:
        return op_policy.vllm_kernel_images()
    except ImportError:
        pytest.skip(f"{VLLM_KERNELS_MODULE} is not installed")


def test_pypi_vllm_has_turing_and_hopper_code_and_none_for_volta():
    images = vllm_kernel_images()  # vLLM 0.26.0's wheel (the pin): what cuobjdump lists for it
    assert {i.arch for i in images if i.kind == "sass"} == {75, 80, 86, 89, 90, 100, 120}
    assert {i.arch for i in images if i.kind == "ptx"} == {80, 89, 90}
    assert runs_on(images, (7, 5)) and runs_on(images, (9, 0))
    assert not runs_on(images, (7, 0))


def test_a_v100_keeps_vllms_custom_all_reduce_only_with_a_vllm_built_for_it():
    pypi = vllm_kernel_images()
    allowed, reason = custom_allreduce_choice(pypi, [(7, 0)] * 4)
    assert not allowed
    assert reason.startswith("NCCL") and "7.0" in reason and "sass_75" in reason and "build_vllm_sm70.sh" in reason
    built_for_sm70 = frozenset({CudaImage("sass", 70), CudaImage("sass", 75)})
    allowed, reason = custom_allreduce_choice(built_for_sm70, [(7, 0)] * 4)
    assert allowed and reason.startswith("vLLM's custom all-reduce allowed") and "P2P" in reason
    assert custom_allreduce_choice(built_for_sm70, []) == (False, "NCCL: no GPU visible")
    assert custom_allreduce_choice(pypi, [(7, 5), (7, 5)])[0]  # Turing with PyPI's vLLM
    assert custom_allreduce_choice(pypi, [(9, 0)])[0]  # emulation on a Hopper GPU: PyPI's kernels run there
    mixed = custom_allreduce_choice(pypi, [(7, 5), (7, 0)])
    assert not mixed[0] and "capability 7.0 " in mixed[1]


@pytest.fixture
def fresh_allreduce_decision(monkeypatch):
    """A process tree that has neither decided nor logged the all-reduce yet."""
    monkeypatch.setenv(op_policy.ALLREDUCE_LOGGED_MARKER, "")
    op_policy.vllm_custom_allreduce_runs.cache_clear()
    yield
    op_policy.vllm_custom_allreduce_runs.cache_clear()


def allreduce_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "tensor-parallel all-reduce" in r.getMessage()]


def with_gpus(monkeypatch, *capabilities):
    gpus = [Gpu(i, "GPU", capability) for i, capability in enumerate(capabilities)]
    monkeypatch.setattr("vllm_sm7x.activation.visible_gpus", lambda: gpus)


def test_the_machines_all_reduce_is_decided_from_the_installed_vllm_and_logged_once(
        monkeypatch, caplog, fresh_allreduce_decision):
    vllm_kernel_images()
    with_gpus(monkeypatch, *[(7, 0)] * 4)
    with caplog.at_level(logging.INFO, logger="vllm.sm7x"):
        assert op_policy.vllm_custom_allreduce_runs() is False
        op_policy.vllm_custom_allreduce_runs.cache_clear()  # a worker process: decides again, logs nothing
        assert op_policy.vllm_custom_allreduce_runs() is False
    lines = allreduce_lines(caplog)
    assert len(lines) == 1 and "tensor-parallel all-reduce: NCCL" in lines[0]


def test_turing_gpus_keep_vllms_custom_all_reduce_with_pypis_vllm(monkeypatch, caplog, fresh_allreduce_decision):
    vllm_kernel_images()
    with_gpus(monkeypatch, (7, 5), (7, 5))
    with caplog.at_level(logging.INFO, logger="vllm.sm7x"):
        assert op_policy.vllm_custom_allreduce_runs() is True
    assert "vLLM's custom all-reduce allowed" in allreduce_lines(caplog)[0]


def test_an_unreadable_kernel_library_means_nccl(monkeypatch, tmp_path, caplog, fresh_allreduce_decision):
    broken = tmp_path / "lib.so"
    broken.write_bytes(b"not a library")
    monkeypatch.setattr(op_policy.importlib.util, "find_spec", lambda name: type("Spec", (), {"origin": broken}))
    with_gpus(monkeypatch, (7, 5))
    with caplog.at_level(logging.INFO, logger="vllm.sm7x"):
        assert op_policy.vllm_custom_allreduce_runs() is False
    assert "NCCL: vLLM's kernel library could not be read" in allreduce_lines(caplog)[0]

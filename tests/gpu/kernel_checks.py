"""Helpers the kernel tests share: NaN-poisoned allocator memory, the error measure, CUDA-graph capture."""
import torch


def poison_free_memory() -> None:
    """Fill the caching allocator's free blocks with all-ones bytes (NaN read as fp16 or fp32), so an
    output element a kernel does not write (its op allocates with torch.empty, which reuses those
    blocks) shows up as NaN: one large block for the large pool, and 1 MB blocks for the small pool
    (allocations up to 1 MB come from there)."""
    junk = [torch.full((64 << 20,), 255, dtype=torch.uint8, device="cuda")]
    junk += [torch.full((1 << 20,), 255, dtype=torch.uint8, device="cuda") for _ in range(16)]
    del junk


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| (Frobenius, in float64) of an output that must hold no NaN:
    a NaN is an element the kernel did not write (see poison_free_memory). Against an all-zero
    expectation (the final state of an empty sequence with no initial state) it is ||actual||: exact
    zeros pass, anything else fails."""
    assert not actual.isnan().any(), "NaN in the output: an element the kernel did not write, or poison"
    difference = (actual.double() - expected).norm()
    scale = expected.double().norm()
    return float(difference / scale if scale > 0 else difference)


def capture(step):
    """(graph, output): step() warmed up on a side stream, then captured once; graph.replay() reruns
    it on whatever the captured inputs hold by then, writing into output."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = step()
    return graph, output

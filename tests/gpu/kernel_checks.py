"""Helpers the kernel tests share: NaN-poisoned allocator memory and CUDA-graph capture."""
import torch


def poison_free_memory() -> None:
    """Fill the caching allocator's free blocks with NaN, so an output element a kernel does not write
    (its op allocates with torch.empty, which reuses those blocks) shows up as NaN."""
    junk = torch.full((64 << 20,), float("nan"), dtype=torch.float16, device="cuda")
    del junk


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

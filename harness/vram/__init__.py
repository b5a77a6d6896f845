"""The VRAM model and the checks against it: model architectures (arch), each engine's memory
plan (plan), the preflight rules (rules), `harness check` and its rendering (check, render),
and the GPU's live memory against the plan (free, usage)."""

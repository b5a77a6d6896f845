"""Telemetry: NVML readings, Prometheus scrapes of the engines, and the background sampler."""

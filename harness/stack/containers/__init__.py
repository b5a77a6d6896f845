"""The `gpu` and `twin-docker` targets: the stack as containers.

plan.py builds each container from the compose file; emulate.py applies the emulated GPU's named
substitutions; backend.py brings the plans up in order, health-gated, and tears them down;
production.py and prod_marker.py stop and restore a running production stack; client.py holds
the Docker client, the capability probe and the sweep; prefetch.py and base_image.py fetch or
build images ahead of a run; logs.py follows container logs into the run directory.
"""

"""The CPU twin: local stand-ins for the paid and GPU-only parts of the routing stack."""

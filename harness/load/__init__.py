"""Load runs: locust users and profiles, the subprocess runner, per-request records and stats."""

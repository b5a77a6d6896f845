"""gunicorn settings for the ai-router.

Run: gunicorn -c infra/ai-router/gunicorn.conf.py 'ai_router.app:create_app()'
"""

import os
import sys
from pathlib import Path

# Lets the command above work from a plain checkout, without `pip install` of the package.
_here = str(Path(__file__).resolve().parent)
if _here not in sys.path:
    sys.path.insert(0, _here)

bind = os.environ.get("ROUTER_BIND", "0.0.0.0:8080")
# One process, many threads: requests mostly wait on upstreams, and a single process keeps
# the classifier's cached label length and the session log's lock in one place.
workers = 1
worker_class = "gthread"
threads = 16
# gthread heartbeats from its main loop, not per request, but a streamed answer from a
# reasoning model can run for many minutes; 0 means never kill a worker for time.
timeout = 0
graceful_timeout = 30
keepalive = 5
# The session log is the access log; gunicorn's own would duplicate it without the route.
accesslog = None
errorlog = "-"
loglevel = "info"

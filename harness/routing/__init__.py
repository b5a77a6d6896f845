"""Routing: the labelled corpus, its evaluation through the router, its metrics, and long-context
conversations. Used by the twin's training, the load users and the acceptance tests."""

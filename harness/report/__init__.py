"""Run records, run directories, renderers, history and comparison."""

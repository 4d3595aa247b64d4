"""Entry points a user runs or submits; thin compositions of pipeline, models and cluster."""
